package node_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/node"
)

// BenchmarkSSEFanout opens 5,000 concurrent Server-Sent Event streams on one
// node, then writes a key b.N times and measures, for each write, the time
// until every stream has the change (the last of 5,000), and each stream's
// own delivery time.
//
//	go test ./node -run '^$' -bench BenchmarkSSEFanout -benchtime 50x
func BenchmarkSSEFanout(b *testing.B) {
	const streams = 5000
	n, c := startNode(b, "../examples/schema.yaml", func(cfg *node.Config) { cfg.MaxStreamsPerClient = streams })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type arrival struct {
		rev int64
		at  time.Time
	}
	var (
		got      atomic.Int64 // arrivals of the current write
		done     = make(chan struct{}, 1)
		arrivals = make([][]arrival, streams) // each reader's own, no shared lock
		wg       sync.WaitGroup
	)
	// A lean load generator on raw connections (one read per event), so
	// the clients, which share the machine's two cores with the node, cost
	// as little as they can.
	addr := strings.TrimPrefix(n.APIURL(), "http://")
	for i := 0; i < streams; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /v1/watch?prefix=taskqueue. HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", addr)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer conn.Close()
			go func() { <-ctx.Done(); conn.Close() }()
			buf := make([]byte, 16<<10)
			for {
				m, err := conn.Read(buf)
				if err != nil {
					return
				}
				now := time.Now()
				for data := buf[:m]; ; {
					k := bytes.Index(data, []byte("\nid: "))
					if k < 0 {
						break
					}
					data = data[k+5:]
					e := bytes.IndexByte(data, '\n')
					if e < 0 {
						break
					}
					rev, _ := strconv.ParseInt(string(data[:e]), 10, 64)
					arrivals[i] = append(arrivals[i], arrival{rev, now})
					if got.Add(1) == streams {
						done <- struct{}{}
					}
				}
			}
		}(i)
	}
	waitStreams(b, n, streams)
	written := map[int64]time.Time{}
	var last []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		t0 := time.Now()
		res, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Text: ptr(fmt.Sprint(1 + i%200))})
		if err != nil {
			b.Fatal(err)
		}
		written[res.Revision] = t0
		<-done
		last = append(last, time.Since(t0))
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	var perOne []time.Duration
	for _, as := range arrivals {
		for _, a := range as {
			perOne = append(perOne, a.at.Sub(written[a.rev]))
		}
	}
	pct := func(d []time.Duration, p int) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)*p/100].Microseconds()) / 1000
	}
	b.ReportMetric(pct(last, 50), "all-p50-ms")
	b.ReportMetric(pct(last, 99), "all-p99-ms")
	b.ReportMetric(pct(perOne, 50), "stream-p50-ms")
	b.ReportMetric(pct(perOne, 99), "stream-p99-ms")
}

func ptr(s string) *string { return &s }

// BenchmarkNodeHeapUnderWrites writes b.N values of about 40 KB through a
// node (a long write load: history, the audit trail and the SSE ring all
// grow with it) and reports the node's live heap after a forced GC, which
// must stay bounded whatever b.N.
//
//	go test ./node -run '^$' -bench BenchmarkNodeHeapUnderWrites -benchtime 1400x
func BenchmarkNodeHeapUnderWrites(b *testing.B) {
	_, c := startNode(b, "../examples/schema.yaml")
	ctx := context.Background()
	blob := strings.Repeat("x", 40<<10)
	heap := func() float64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc) / (1 << 20)
	}
	before := heap()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Set(ctx, "billing.limits", api.SetRequest{Value: map[string]any{"n": i, "blob": blob}}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(before, "heap-before-MiB")
	b.ReportMetric(heap(), "heap-after-MiB")
}

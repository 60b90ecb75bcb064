package kv_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/auth"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// BenchmarkWrite compares a validated write (one key, one cross-key rule,
// with its audit record, in one transaction) with a raw etcd Put on the same
// member, with 1 and 16 concurrent writers. Each writer has its own keys, so
// writers do not conflict. It reports p50 and p99 latency and writes/s.
// Then it turns etcd's auth on and runs both again, through a client logged
// in as a user with etcd's root role (as a node is): etcd=auth.
//
//	go test ./kv -run '^$' -bench BenchmarkWrite -benchtime 2000x
func BenchmarkWrite(b *testing.B) {
	m, c := etcdtest.Start(b)
	s := kv.New(c)
	const maxWriters = 16
	var doc strings.Builder
	doc.WriteString("keys:\n")
	for w := 0; w < maxWriters; w++ {
		fmt.Fprintf(&doc, "  w%d.idle: {type: duration, default: 1m}\n  w%d.absolute: {type: duration, default: 8h}\n", w, w)
	}
	doc.WriteString("rules:\n")
	for w := 0; w < maxWriters; w++ {
		fmt.Fprintf(&doc, "  - {name: r%d, expr: w%d.idle <= w%d.absolute}\n", w, w, w)
	}
	if _, err := s.SetSchema(context.Background(), kv.Meta{}, []byte(doc.String())); err != nil {
		b.Fatal(err)
	}
	run := func(etcdAuth string, c *clientv3.Client, s *kv.Store) {
		for _, writers := range []int{1, 16} {
			raw := func(ctx context.Context, w, i int) error {
				_, err := c.Put(ctx, fmt.Sprintf("/raw/w%d", w), fmt.Sprintf(`{"v":"%dm"}`, 1+i%50))
				return err
			}
			validated := func(ctx context.Context, w, i int) error {
				v := fmt.Sprintf("%dm", 1+i%50)
				_, err := s.Apply(ctx, kv.Meta{Actor: "bench", Action: kv.ActionSet},
					[]kv.Write{{Key: fmt.Sprintf("w%d.idle", w), Text: &v}})
				return err
			}
			b.Run(fmt.Sprintf("etcd=%s/raw-put/writers=%d", etcdAuth, writers), func(b *testing.B) { runWriters(b, writers, raw) })
			b.Run(fmt.Sprintf("etcd=%s/validated/writers=%d", etcdAuth, writers), func(b *testing.B) { runWriters(b, writers, validated) })
			// Both at once: every writer alternates a raw Put and a
			// validated write, so the two meet the same etcd, the same
			// load and the same disk: the ratio of their p50s is the
			// steadiest measure of the budget on a machine whose speed
			// drifts.
			b.Run(fmt.Sprintf("etcd=%s/alternating/writers=%d", etcdAuth, writers), func(b *testing.B) {
				var mu sync.Mutex
				lat := [2][]time.Duration{}
				runWriters(b, writers, func(ctx context.Context, w, i int) error {
					t0 := time.Now()
					op := raw
					if i%2 == 1 {
						op = validated
					}
					err := op(ctx, w, i)
					mu.Lock()
					lat[i%2] = append(lat[i%2], time.Since(t0))
					mu.Unlock()
					return err
				})
				if len(lat[1]) == 0 {
					return
				}
				p50 := func(l []time.Duration) float64 {
					sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
					return float64(l[len(l)/2].Microseconds())
				}
				r, v := p50(lat[0]), p50(lat[1])
				b.ReportMetric(r, "raw-p50-µs")
				b.ReportMetric(v, "validated-p50-µs")
				b.ReportMetric(v/r, "ratio")
			})
		}
	}
	run("open", c, s)
	ctx := context.Background()
	cred := auth.NewEtcdCredential("bench")
	if err := auth.EnsureEtcdRoot(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := auth.PutEtcdUser(ctx, c, cred, "root"); err != nil {
		b.Fatal(err)
	}
	if _, err := c.AuthEnable(ctx); err != nil {
		b.Fatal(err)
	}
	ac, err := clientv3.New(cred.Config(clientv3.Config{Endpoints: []string{m.Endpoint}, Logger: zap.NewNop()}))
	if err != nil {
		b.Fatal(err)
	}
	defer ac.Close()
	run("auth", ac, kv.New(ac))
}

// runWriters runs b.N operations spread over writers goroutines, each with
// one operation in flight, and reports latency percentiles and throughput.
func runWriters(b *testing.B, writers int, op func(ctx context.Context, w, i int) error) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := op(ctx, w, i); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
}

// BenchmarkPruneAudit prunes 500 records off an audit trail of one hot key
// (every record changed it), at two trail sizes: what a record costs to
// prune must not grow with the trail.
//
//	go test ./kv -run '^$' -bench BenchmarkPruneAudit -benchtime 1x
func BenchmarkPruneAudit(b *testing.B) {
	for _, size := range []int{1500, 6000} {
		b.Run(fmt.Sprintf("trail=%d", size), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				_, c := etcdtest.Start(b)
				s := kv.New(c)
				ctx := context.Background()
				if _, err := s.SetSchema(ctx, kv.Meta{}, []byte("keys:\n  hot: {type: int, default: 0}\n")); err != nil {
					b.Fatal(err)
				}
				for i := range size {
					v := fmt.Sprint(i)
					if _, err := s.Apply(ctx, kv.Meta{Actor: "bench", Action: kv.ActionSet}, []kv.Write{{Key: "hot", Text: &v}}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				t0 := time.Now()
				n, err := s.PruneAudit(ctx, kv.Retention{MaxRecords: size + 1 - 500})
				if err != nil || n != 500 {
					b.Fatalf("pruned %d: %v", n, err)
				}
				b.ReportMetric(float64(time.Since(t0).Microseconds())/float64(n), "µs/record")
			}
		})
	}
}

// BenchmarkSealedWrite writes a 1 KiB string value through the validated
// write path to a sensitive key (sealed under a data key) and to one that is
// not, alternately in one loop on one member, so both see the same etcd: the
// difference of their p50s is what sealing adds to a write (issue 11's
// budget: at most 20 µs).
//
//	go test ./kv -run '^$' -bench BenchmarkSealedWrite -benchtime 6000x -count 3
func BenchmarkSealedWrite(b *testing.B) {
	_, c := etcdtest.Start(b)
	s := kv.New(c, kv.WithProvider(kek))
	doc := "keys:\n  plain.value: {type: string}\n  secret.value: {type: string, sensitive: true}\n"
	if _, err := s.SetSchema(context.Background(), kv.Meta{}, []byte(doc)); err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("x", 1020)
	keys := []string{"plain.value", "secret.value"}
	lat := [2][]time.Duration{}
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprintf("%04d", i%10000) + value
		t0 := time.Now()
		if _, err := s.Apply(context.Background(), kv.Meta{Actor: "bench", Action: kv.ActionSet}, []kv.Write{{Key: keys[i%2], Text: &v}}); err != nil {
			b.Fatal(err)
		}
		lat[i%2] = append(lat[i%2], time.Since(t0))
	}
	b.StopTimer()
	if b.N < 2 {
		return
	}
	p50 := func(l []time.Duration) float64 {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return float64(l[len(l)/2].Microseconds())
	}
	plain, sealed := p50(lat[0]), p50(lat[1])
	b.ReportMetric(plain, "plain-p50-µs")
	b.ReportMetric(sealed, "sealed-p50-µs")
	b.ReportMetric(sealed-plain, "sealing-µs")
}

// BenchmarkAuditRead reads pages of an audit trail of 100,000 records (the
// default retention) newest first, on one member, through etcd's sorted
// read and through the AuditIndex a node keeps, in the same run: the
// trail's newest page (GET /v1/audit, cfgadm audit), a hot key's history
// (a fifth of the records changed it: cfgadm history) and a cold key's
// records (one in 500). It reports the index's load time and heap.
//
//	go test ./kv -run '^$' -bench BenchmarkAuditRead -benchtime 200x
func BenchmarkAuditRead(b *testing.B) {
	const records = 100_000
	_, c := etcdtest.Start(b)
	ctx := context.Background()
	plain := kv.New(c)
	if _, err := plain.SetSchema(ctx, kv.Meta{}, []byte("keys:\n  hot: {type: string}\n  cold: {type: string}\n")); err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("v", 200)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= records; i = int(next.Add(1)) {
				key := fmt.Sprintf("svc%d.key", i%500)
				switch {
				case i%5 == 0:
					key = "hot"
				case i%500 == 1:
					key = "cold"
				}
				ops := plain.AuditOp(kv.Meta{Actor: "bench", Action: kv.ActionSet}, []kv.Change{{Key: key, New: value}})
				if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := kv.NewAuditIndex(c, kv.NewLayout(""), zap.NewNop())
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t0 := time.Now()
	go func() {
		defer close(done)
		ix.Run(ictx)
	}()
	defer func() { cancel(); <-done }()
	for ix.Revision() == 0 {
		time.Sleep(time.Millisecond)
	}
	load := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	indexed := kv.New(c, kv.WithAuditIndex(ix))

	reads := map[string]func(s *kv.Store) (int, error){
		"trail": func(s *kv.Store) (int, error) {
			r, err := s.Audit(ctx, kv.AuditQuery{Limit: 100})
			return len(r), err
		},
		"hot-history": func(s *kv.Store) (int, error) {
			h, err := s.History(ctx, "hot", 20)
			return len(h), err
		},
		"cold-key": func(s *kv.Store) (int, error) {
			r, err := s.Audit(ctx, kv.AuditQuery{Key: "cold", Limit: 20})
			return len(r), err
		},
	}
	for _, name := range []string{"trail", "hot-history", "cold-key"} {
		for _, via := range []struct {
			name string
			s    *kv.Store
		}{{"etcd", plain}, {"index", indexed}} {
			b.Run(name+"/"+via.name, func(b *testing.B) {
				for range b.N {
					if n, err := reads[name](via.s); err != nil || n == 0 {
						b.Fatalf("%d read, %v", n, err)
					}
				}
				b.ReportMetric(load.Seconds(), "index-load-s")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "index-MiB")
			})
		}
	}
}

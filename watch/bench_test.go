package watch_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/watch"
)

// BenchmarkGet compares a cached typed Get on a hit with a bare golang-lru
// Get, a plain map read and an etcd serializable Get, serially and with
// parallel readers (-cpu 1,2,4).
//
//	go test ./watch -run '^$' -bench BenchmarkGet -benchmem -cpu 1,2,4
func BenchmarkGet(b *testing.B) {
	e := setupB(b)
	c, err := watch.New(context.Background(), e.etcd)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const key = "session.idle_timeout"
	c.Duration(key, 0) // fill the cache
	l, _ := lru.New[string, time.Duration](1000)
	l.Add(key, time.Minute)
	m := map[string]time.Duration{key: time.Minute}
	var sink atomic.Int64

	b.Run("client-Duration", func(b *testing.B) {
		var s time.Duration
		for i := 0; i < b.N; i++ {
			s += c.Duration(key, 0)
		}
		sink.Add(int64(s))
	})
	b.Run("golang-lru-Get", func(b *testing.B) {
		var s time.Duration
		for i := 0; i < b.N; i++ {
			v, _ := l.Get(key)
			s += v
		}
		sink.Add(int64(s))
	})
	b.Run("map-read", func(b *testing.B) {
		var s time.Duration
		for i := 0; i < b.N; i++ {
			s += m[key]
		}
		sink.Add(int64(s))
	})
	b.Run("etcd-serializable-Get", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := e.etcd.Get(context.Background(), "/cfgcluster/v1/values/"+key, clientv3.WithSerializable()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel/client-Duration", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var s time.Duration
			for pb.Next() {
				s += c.Duration(key, 0)
			}
			sink.Add(int64(s))
		})
	})
	b.Run("parallel/golang-lru-Get", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var s time.Duration
			for pb.Next() {
				v, _ := l.Get(key)
				s += v
			}
			sink.Add(int64(s))
		})
	})
	b.Run("parallel/map-read", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var s time.Duration
			for pb.Next() {
				s += m[key]
			}
			sink.Add(int64(s))
		})
	})
}

// BenchmarkPropagation measures Put → callback in the last of N
// subscribers of one client (one etcd watch), beside one raw clientv3
// watcher and one raw watcher per subscriber (up to 1,000). Each iteration
// is one Put; it reports p50 and p99 over the iterations.
//
//	go test ./watch -run '^$' -bench BenchmarkPropagation -benchtime 200x
func BenchmarkPropagation(b *testing.B) {
	e := setupB(b)
	const key = "taskqueue.max_workers"
	etcdKey := "/cfgcluster/v1/values/" + key
	for _, n := range []int{1, 100, 1000, 10000, 100000} {
		b.Run(fmt.Sprintf("client/subscribers=%d", n), func(b *testing.B) {
			c, err := watch.New(context.Background(), e.etcd, watch.WithWorkers(runtime.GOMAXPROCS(0)), watch.WithQueueSize(1024))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			arrivals := newCountdown()
			h := watch.HandlerFuncs{BatchFunc: func(watch.Batch) { arrivals.arrived() }}
			for i := 0; i < n; i++ {
				c.Subscribe(key, h)
			}
			measure(b, e, key, n, arrivals)
		})
	}
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("raw-watchers/watchers=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			arrivals := newCountdown()
			for i := 0; i < n; i++ {
				wch := e.etcd.Watch(ctx, etcdKey)
				go func() {
					for range wch {
						arrivals.arrived()
					}
				}()
			}
			time.Sleep(200 * time.Millisecond) // let the watches register
			measure(b, e, key, n, arrivals)
		})
	}
}

// countdown signals done when the expected number of arrivals is reached.
type countdown struct {
	got, target atomic.Int64
	done        chan struct{}
}

func newCountdown() *countdown { return &countdown{done: make(chan struct{}, 1)} }

func (c *countdown) arrived() {
	if c.got.Add(1) == c.target.Load() {
		c.done <- struct{}{}
	}
}

// measure writes key b.N times and times each write until n arrivals, then
// reports p50 and p99.
func measure(b *testing.B, e *env, key string, n int, c *countdown) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.got.Store(0)
		c.target.Store(int64(n))
		t0 := time.Now()
		e.set(b, key, fmt.Sprint(1+i%200))
		<-c.done
		lat = append(lat, time.Since(t0))
	}
	report(b, lat)
}

// BenchmarkPropagationInterleaved alternates, write by write, between a key
// that 1,000 subscribers of one client wait for and a key that one raw
// clientv3 watcher (on its own connection) waits for, so both paths are
// measured under the same conditions. It reports both p50s and their ratio.
//
//	go test ./watch -run '^$' -bench BenchmarkPropagationInterleaved -benchtime 500x
func BenchmarkPropagationInterleaved(b *testing.B) {
	e := setupB(b)
	const subs = 1000
	c, err := watch.New(context.Background(), e.etcd, watch.WithWorkers(runtime.GOMAXPROCS(0)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var got atomic.Int64
	done := make(chan struct{}, 1)
	h := watch.HandlerFuncs{BatchFunc: func(watch.Batch) {
		if got.Add(1) == subs {
			done <- struct{}{}
		}
	}}
	for i := 0; i < subs; i++ {
		c.Subscribe("taskqueue.max_workers", h)
	}
	raw := e.m.Client(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rawDone := make(chan struct{}, 1)
	wch := raw.Watch(ctx, "/cfgcluster/v1/values/alerts.cpu_threshold")
	go func() {
		for range wch {
			rawDone <- struct{}{}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	var mine, theirs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		t0 := time.Now()
		e.set(b, "taskqueue.max_workers", fmt.Sprint(1+i%200))
		<-done
		mine = append(mine, time.Since(t0))
		t0 = time.Now()
		e.set(b, "alerts.cpu_threshold", fmt.Sprint(float64(i%10)/10))
		<-rawDone
		theirs = append(theirs, time.Since(t0))
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	m, r := p50(mine), p50(theirs)
	b.ReportMetric(m, "client-1000-p50-ms")
	b.ReportMetric(r, "raw-1-p50-ms")
	b.ReportMetric(m/r, "ratio")
}

func report(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkIdleSubscriberMemory reports the heap bytes each idle
// subscriber costs, over 100,000 of them.
//
//	go test ./watch -run '^$' -bench BenchmarkIdleSubscriberMemory -benchtime 1x
func BenchmarkIdleSubscriberMemory(b *testing.B) {
	e := setupB(b)
	c, err := watch.New(context.Background(), e.etcd)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const n = 100000
	h := watch.HandlerFuncs{UpdateFunc: func(watch.Event) {}}
	var before, after runtime.MemStats
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&before)
		subs := make([]*watch.Subscription, n)
		for j := range subs {
			subs[j] = c.Subscribe(fmt.Sprintf("app.key_%d", j%1000), h)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/subscriber")
		for _, s := range subs {
			c.Unsubscribe(s)
		}
	}
}

// BenchmarkClientMemory measures a client's resident memory with 100,000
// keys of about 1 KiB of JSON each: the heap it holds after its first list
// and a forced GC, with no key read yet and with every key read once (the
// cache full of decoded values), and how long the first list took.
//
//	go test ./watch -run '^$' -bench BenchmarkClientMemory -benchtime 1x
func BenchmarkClientMemory(b *testing.B) {
	const keys = 100_000
	_, etcd := etcdtest.Start(b)
	store := kv.New(etcd)
	var doc strings.Builder
	doc.WriteString("keys:\n")
	for i := range keys {
		fmt.Fprintf(&doc, "  big.k%06d: {type: json}\n", i)
	}
	ctx := context.Background()
	if _, err := store.SetSchema(ctx, kv.Meta{}, []byte(doc.String())); err != nil {
		b.Fatal(err)
	}
	value := func(i int) map[string]any {
		m := map[string]any{"id": i}
		for f := range 24 {
			m[fmt.Sprintf("field_%02d", f)] = fmt.Sprintf("value %06d of field %02d, padded", i, f)
		}
		return m // about 1 KiB as JSON
	}
	for i := 0; i < keys; i += 1000 {
		var ws []kv.Write
		for j := i; j < i+1000; j++ {
			ws = append(ws, kv.Write{Key: fmt.Sprintf("big.k%06d", j), Value: value(j)})
		}
		if _, err := store.Apply(ctx, kv.Meta{}, ws); err != nil {
			b.Fatal(err)
		}
	}
	heap := func() float64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc) / (1 << 20)
	}
	for i := 0; i < b.N; i++ {
		before := heap()
		start := time.Now()
		c, err := watch.New(ctx, etcd, watch.WithMirror(), watch.WithStartTimeout(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		listed := heap() - before
		for j := range keys {
			c.Get(fmt.Sprintf("big.k%06d", j), nil)
		}
		read := heap() - before
		c.Close()
		b.ReportMetric(listed, "MiB-listed")
		b.ReportMetric(read, "MiB-after-reading-all")
		b.ReportMetric(took.Seconds(), "s-first-list")
	}
}

// BenchmarkGetSealed reads a sensitive value, sealed in etcd, through a
// client holding its keyring, next to a plain one of the same type in the
// same run: a hit costs the same, since the value is opened once, when it
// changes (issue 11's budget).
//
//	go test ./watch -run '^$' -bench BenchmarkGetSealed -benchmem -count 3
func BenchmarkGetSealed(b *testing.B) {
	e := setupB(b)
	e.set(b, "site.banner", "hello", "db.password", "hunter2")
	c, err := watch.New(context.Background(), e.etcd, e.keyring(b, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var sink atomic.Int64
	for _, key := range []string{"site.banner", "db.password"} {
		if c.String(key, "") == "" {
			b.Fatalf("%s does not read", key)
		}
		b.Run(key, func(b *testing.B) {
			n := 0
			for b.Loop() {
				n += len(c.String(key, ""))
			}
			sink.Add(int64(n))
		})
	}
}

// BenchmarkFlag evaluates feature flags through the watch client, as a
// service calls it, from parallel goroutines: a static flag, one targeting
// rule (ends_with on an attribute), a 10% fractional rollout, beside a
// cached typed Get of a plain key (issue 12's budgets: 50 ns and no
// allocation, 300 ns, 300 ns; parallel readers scale).
//
//	go test ./watch -run '^$' -bench BenchmarkFlag -benchmem -cpu 1,2 -count 3
func BenchmarkFlag(b *testing.B) {
	e := setupB(b)
	e.set(b, "flags.static", `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}`,
		"flags.rule", `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
			"targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]}}`,
		"flags.fractional", `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
			"targeting": {"fractional": [["on", 10], ["off", 90]]}}`)
	c, err := watch.New(context.Background(), e.etcd)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	user := map[string]any{"targetingKey": "user-1234", "email": "ada@example.com"}
	for _, key := range []string{"static", "rule", "fractional"} {
		b.Run(key, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, d := c.BoolFlag(ctx, key, false, user); d.ErrorCode != "" {
						panic(d.ErrorMessage)
					}
				}
			})
		})
	}
	b.Run("get-plain-key", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Duration("session.idle_timeout", 0)
			}
		})
	})
}

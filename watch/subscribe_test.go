package watch_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cfgcluster/watch"
)

func TestPatternsAndUnsubscribe(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	all, session, idle := &recorder{}, &recorder{}, &recorder{}
	c.Subscribe("*", all)
	c.Subscribe("session.*", session)
	sIdle := c.Subscribe("session.idle_timeout", idle)
	if got := c.Subscribers("session.idle_timeout"); len(got) != 3 {
		t.Fatalf("Subscribers = %v", got)
	}
	if got := c.Subscribers("log.level"); !slices.Equal(got, []string{"*"}) {
		t.Fatalf("Subscribers(log.level) = %v", got)
	}
	// One transaction over two keys: each subscriber gets its part, whole.
	rev := e.set(t, "session.idle_timeout", "10m", "log.level", "warn")
	eventually(t, "delivery", func() bool { return all.Last() == rev && session.Last() == rev && idle.Last() == rev })
	ab, _ := all.Snapshot()
	sb, _ := session.Snapshot()
	if len(ab[0].Events) != 2 || len(sb[0].Events) != 1 || sb[0].Events[0].Key != "session.idle_timeout" {
		t.Fatalf("all %+v session %+v", ab, sb)
	}
	if ev := sb[0].Events[0]; ev.Kind != watch.Put || ev.Old != 15*time.Minute || ev.New != 10*time.Minute || ev.Actor != "admin" {
		t.Fatalf("event %+v", ev)
	}
	if !c.Unsubscribe(sIdle) || c.Unsubscribe(sIdle) {
		t.Fatal("Unsubscribe should succeed once")
	}
	rev = e.set(t, "session.idle_timeout", "11m")
	eventually(t, "delivery", func() bool { return session.Last() == rev })
	if b, _ := idle.Snapshot(); len(b) != 1 {
		t.Fatal("an unsubscribed handler was called")
	}
}

// blocker blocks in its handler until released.
type blocker struct {
	recorder
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (b *blocker) OnBatch(bt watch.Batch) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	b.recorder.OnBatch(bt)
}

// A slow subscriber neither delays the others nor stalls the watch; its
// queue overflows, and it is told how many batches it missed.
func TestSlowSubscriberIsIsolated(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd, watch.WithQueueSize(3), watch.WithSlowThreshold(time.Hour))
	slow := &blocker{release: make(chan struct{}), entered: make(chan struct{})}
	fast := &recorder{}
	c.Subscribe("taskqueue.*", slow)
	c.Subscribe("taskqueue.*", fast)
	var last int64
	for i := 1; i <= 10; i++ {
		last = e.set(t, "taskqueue.max_workers", fmt.Sprint(i))
		if i == 1 {
			<-slow.entered // it holds its first batch
		}
	}
	eventually(t, "the fast subscriber", func() bool { return fast.Last() == last })
	if c.Int("taskqueue.max_workers", 0) != 10 {
		t.Fatal("the cache waited for a slow subscriber")
	}
	close(slow.release)
	eventually(t, "the resync notice", func() bool { _, r := slow.Snapshot(); return len(r) == 1 })
	b, r := slow.Snapshot()
	if len(b) != 4 || r[0].Reason != "overflow" || r[0].Dropped != 6 || r[0].Revision != last {
		t.Fatalf("slow got %d batches and %+v; want 1 running + 3 queued, then 6 dropped", len(b), r)
	}
	for i := 1; i < len(b); i++ {
		if b[i].Revision <= b[i-1].Revision {
			t.Fatal("out of order")
		}
	}
}

// panicker panics while broken.
type panicker struct {
	calls   atomic.Int32
	resyncs atomic.Int32
	dropped atomic.Int32
	broken  atomic.Bool
}

func (p *panicker) call() {
	p.calls.Add(1)
	if p.broken.Load() {
		panic("boom")
	}
}
func (p *panicker) OnPut(watch.Event)       { p.call() }
func (p *panicker) OnUpdate(watch.Event)    { p.call() }
func (p *panicker) OnDelete(watch.Event)    { p.call() }
func (p *panicker) OnResync(r watch.Resync) { p.dropped.Add(int32(r.Dropped)); p.resyncs.Add(1) }

// A panicking subscriber is recovered, then cut off by its circuit breaker;
// the others go on.
func TestPanickingSubscriberTripsBreaker(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	p := &panicker{}
	p.broken.Store(true)
	ok := &recorder{}
	c.Subscribe("log.level", p)
	c.Subscribe("log.level", ok)
	var last int64
	for i := 0; i < 8; i++ {
		last = e.set(t, "log.level", []string{"debug", "info"}[i%2])
	}
	eventually(t, "the healthy subscriber", func() bool { return ok.Last() == last })
	b, _ := ok.Snapshot()
	if len(b) != 8 {
		t.Fatalf("healthy subscriber got %d of 8", len(b))
	}
	// Mended, it is told what it missed when its breaker closes, with no
	// further change to wake it: 5 failed calls opened the breaker, and
	// the 3 batches after them were dropped.
	p.broken.Store(false)
	eventually(t, "the resync notice when the breaker closes", func() bool { return p.resyncs.Load() == 1 })
	if n, d := p.calls.Load(), p.dropped.Load(); n != 5 || d != 3 {
		t.Fatalf("%d calls and %d dropped; the breaker should open after 5 failed calls", n, d)
	}
	e.set(t, "log.level", "warn")
	eventually(t, "delivery after the breaker closed", func() bool { return p.calls.Load() == 6 })
}

// Subscribers cost no goroutine and about a few hundred bytes each.
func TestManySubscribersAreCheap(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	var got atomic.Int64
	h := watch.HandlerFuncs{UpdateFunc: func(watch.Event) { got.Add(1) }, PutFunc: func(watch.Event) { got.Add(1) }}
	const n = 20000
	before := goroutines()
	for i := 0; i < n; i++ {
		c.Subscribe("feature.new_checkout", h)
	}
	if after := goroutines(); after > before+50 { // etcd's own goroutines come and go
		t.Fatalf("%d subscribers started %d goroutines", n, after-before)
	}
	e.set(t, "feature.new_checkout", "true")
	eventually(t, "every subscriber", func() bool { return got.Load() == n })
}

func goroutines() int { return runtimeNumGoroutine() }

// One etcd watch per client, whatever the number of subscribers, as etcd's
// own metrics count them.
func TestOneEtcdWatchPerClient(t *testing.T) {
	e := setup(t)
	before := etcdWatchers(t)
	c := newClient(t, e.etcd)
	for i := 0; i < 10000; i++ {
		c.Subscribe(fmt.Sprintf("app.key_%d", i%100), watch.HandlerFuncs{})
	}
	c.Subscribe("*", watch.HandlerFuncs{})
	eventually(t, "the watch to register", func() bool { return etcdWatchers(t) > before })
	time.Sleep(300 * time.Millisecond) // a second watch, if any, would have registered too
	if got := etcdWatchers(t) - before; got != 1 {
		t.Fatalf("etcd counts %v watchers for one client with 10,001 subscribers", got)
	}
}

// etcdWatchers reads etcd_debugging_mvcc_watcher_total from the embedded
// members' metrics (they register in the default registry).
func etcdWatchers(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_debugging_mvcc_watcher_total" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("etcd_debugging_mvcc_watcher_total not found")
	return 0
}

package watch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/seal"
	"cfgcluster/watch"
	"cfgcluster/watch/watchtest"
)

func TestMain(m *testing.M) {
	etcdtest.VerifyNoLeaks(m,
		// etcd's peer transports (rafthttp) keep keep-alive connections
		// between members open after a member restarts; this package runs
		// no HTTP of its own.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	)
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// env is one etcd member with the example schema and a store to write through.
type env struct {
	m     *etcdtest.Member
	etcd  *clientv3.Client
	store *kv.Store
}

// kek is the stores' key-encryption keyring (a node's --encryption-keyring).
var kek = func() *seal.Local {
	ring := seal.NewKEKRing()
	p, _ := seal.NewLocal(ring)
	return p
}()

func setup(t testing.TB) *env {
	t.Helper()
	m, c := etcdtest.Start(t)
	s := kv.New(c, kv.WithProvider(kek))
	doc, err := os.ReadFile("../examples/schema.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetSchema(bg(t), kv.Meta{Actor: "test"}, doc); err != nil {
		t.Fatal(err)
	}
	return &env{m: m, etcd: c, store: s}
}

// keyring is the data keys for prefix, as cfgadm keys export gives a service.
func (e *env) keyring(t testing.TB, prefix string) watch.Option {
	t.Helper()
	r, err := e.store.ExportKeys(bg(t), kv.Meta{Actor: "test"}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return watch.WithKeyring(r)
}

func (e *env) set(t testing.TB, kvs ...string) int64 {
	t.Helper()
	var ws []kv.Write
	for i := 0; i < len(kvs); i += 2 {
		ws = append(ws, kv.Write{Key: kvs[i], Text: &kvs[i+1]})
	}
	r, err := e.store.Apply(bg(t), kv.Meta{Actor: "admin", Action: kv.ActionApply}, ws)
	if err != nil {
		t.Fatal(err)
	}
	return r.Revision
}

func (e *env) del(t *testing.T, key string) int64 {
	t.Helper()
	r, err := e.store.Apply(bg(t), kv.Meta{Action: kv.ActionDelete}, []kv.Write{{Key: key, Delete: true}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Revision
}

func newClient(t *testing.T, c watch.Etcd, opts ...watch.Option) *watch.Client {
	t.Helper()
	wc, err := watch.New(bg(t), c, append([]watch.Option{watch.WithProgressInterval(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wc.Close() })
	return wc
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder collects batches and resync notices.
type recorder = watchtest.Recorder

func TestLookupChain(t *testing.T) {
	e := setup(t)
	e.set(t, "taskqueue.max_workers", "16")
	t.Setenv("CFG_LOG_LEVEL", "debug")
	t.Setenv("CFG_ALERTS_CPU_THRESHOLD", "not-a-float") // ignored, logged
	c := newClient(t, e.etcd)

	v, err := c.Lookup("log.level")
	if err != nil || v.Value != "debug" || v.Source != watch.SourceEnvironment {
		t.Fatalf("env: %+v %v", v, err)
	}
	v, err = c.Lookup("taskqueue.max_workers")
	if err != nil || v.Value != int64(16) || v.Source != watch.SourceCluster || v.Actor != "admin" || v.Revision == 0 || v.TTL != 300*time.Second {
		t.Fatalf("cluster: %+v %v", v, err)
	}
	if c.Int("taskqueue.max_workers", 1) != 16 || c.Duration("session.idle_timeout", 0) != 15*time.Minute ||
		c.Float("alerts.cpu_threshold", 0) != 0.9 || c.Bool("feature.new_checkout", true) != false ||
		c.String("log.level", "") != "debug" || !slices.Equal(c.Strings("alerts.channels", nil), []string{"email"}) {
		t.Fatal("typed getters")
	}
	var limits struct{ Daily int }
	if err := c.JSON("billing.limits", &limits); err != nil || limits.Daily != 100 {
		t.Fatalf("JSON: %+v %v", limits, err)
	}
	if c.Int("log.level", 7) != 7 {
		t.Fatal("a getter of the wrong type returns the default")
	}
	if _, err := c.Lookup("db.password"); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("no value, no default: %v", err)
	}
	if c.Get("no.such", "fallback") != "fallback" {
		t.Fatal("Get default")
	}
	st := c.Stats()
	if st.Hits == 0 || st.Misses == 0 || st.Keys == 0 || st.HitRate <= 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// Concurrent writers commit batches of several keys; a subscriber to
// everything sees every value-changing revision, in order, with no gap,
// each transaction whole, and the cache matches etcd at the end.
func TestOrderedGapFreeWholeTransactions(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	rec := &recorder{}
	sub := c.Subscribe("*", rec)
	keys := []string{"taskqueue.max_workers", "alerts.cpu_threshold", "site.banner", "log.level"}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				k1, k2 := keys[(w+i)%4], keys[(w+i+1)%4]
				vals := map[string]string{"taskqueue.max_workers": fmt.Sprint(1 + (w*31+i)%200), "alerts.cpu_threshold": fmt.Sprint(float64(i%10) / 10),
					"site.banner": fmt.Sprintf("w%d-%d", w, i), "log.level": []string{"debug", "info", "warn"}[i%3]}
				_, err := e.store.Apply(context.Background(), kv.Meta{Action: kv.ActionApply},
					[]kv.Write{{Key: k1, Text: ptr(vals[k1])}, {Key: k2, Text: ptr(vals[k2])}})
				if err != nil && cfgerr.CodeOf(err) != cfgerr.Conflict { // a conflict is never committed
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	recs, err := e.store.Audit(bg(t), kv.AuditQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][]string{}
	var last int64
	for _, r := range recs {
		if len(r.Changes) == 0 {
			continue
		}
		for _, ch := range r.Changes {
			want[r.Revision] = append(want[r.Revision], ch.Key)
		}
		last = max(last, r.Revision)
	}
	eventually(t, "the last revision", func() bool { return rec.Last() == last && sub.HasSynced() })
	got, _ := rec.Snapshot()
	if len(got) != len(want) {
		t.Fatalf("got %d batches, want %d", len(got), len(want))
	}
	for i, b := range got {
		if i > 0 && b.Revision <= got[i-1].Revision {
			t.Fatalf("revision %d after %d", b.Revision, got[i-1].Revision)
		}
		var ks []string
		for _, ev := range b.Events {
			ks = append(ks, ev.Key)
			if ev.Revision != b.Revision {
				t.Fatalf("event of revision %d in batch %d", ev.Revision, b.Revision)
			}
		}
		sort.Strings(ks)
		w := want[b.Revision]
		sort.Strings(w)
		if !slices.Equal(ks, w) {
			t.Fatalf("revision %d: got keys %v, want %v (a transaction split or mixed)", b.Revision, ks, w)
		}
	}
	// Every cached value equals a read of etcd.
	for _, k := range keys {
		v, _ := c.Lookup(k)
		sv, _ := e.store.Get(bg(t), k, 0)
		if !schema.Equal(v.Value, sv.Value) || v.Revision != sv.Revision {
			t.Fatalf("%s: cache %v@%d, etcd %v@%d", k, v.Value, v.Revision, sv.Value, sv.Revision)
		}
	}
}

func ptr(s string) *string { return &s }

// The cache follows changes, including deletes back to the default.
func TestCacheFollowsChanges(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	rec := &recorder{}
	c.Subscribe("session.*", rec)
	if c.Duration("session.idle_timeout", 0) != 15*time.Minute {
		t.Fatal("default")
	}
	e.set(t, "session.idle_timeout", "20m")
	eventually(t, "20m", func() bool { return c.Duration("session.idle_timeout", 0) == 20*time.Minute })
	r, err := e.store.Apply(bg(t), kv.Meta{Action: kv.ActionDelete, Actor: "carol", Comment: "back to normal"},
		[]kv.Write{{Key: "session.idle_timeout", Delete: true}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "back to default", func() bool { return c.Duration("session.idle_timeout", 0) == 15*time.Minute })
	v, _ := c.Lookup("session.idle_timeout")
	if v.Source != watch.SourceDefault {
		t.Fatalf("after delete: %+v", v)
	}
	// Events say who made each change and why, deletes included (which
	// leave no envelope: the last-change key tells).
	eventually(t, "both events", func() bool { b, _ := rec.Snapshot(); return len(b) == 2 })
	b, _ := rec.Snapshot()
	if set := b[0].Events[0]; set.Actor != "admin" || set.Time.IsZero() {
		t.Fatalf("set event: %+v", set)
	}
	if del := b[1].Events[0]; del.Kind != watch.Delete || del.Revision != r.Revision || del.Actor != "carol" ||
		del.Comment != "back to normal" || del.Time.IsZero() {
		t.Fatalf("delete event: %+v", del)
	}
	// Refresh reads through at once.
	e.set(t, "log.level", "warn")
	if err := c.Refresh(bg(t), "log.level"); err != nil {
		t.Fatal(err)
	}
	if c.String("log.level", "") != "warn" {
		t.Fatal("refresh")
	}
}

// flaky wraps etcd and can cut the watch: while cut, every watch ends at once.
type flaky struct {
	*clientv3.Client
	mu       sync.Mutex
	cut      bool
	failGets atomic.Int32 // Gets to fail before the next succeeds
}

func (f *flaky) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if f.failGets.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	f.failGets.Store(0)
	return f.Client.Get(ctx, key, opts...)
}

func (f *flaky) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	f.mu.Lock()
	cut := f.cut
	f.mu.Unlock()
	if cut {
		ch := make(chan clientv3.WatchResponse)
		close(ch)
		return ch
	}
	return f.Client.Watch(ctx, key, opts...)
}

func (f *flaky) setCut(cut bool) {
	f.mu.Lock()
	f.cut = cut
	f.mu.Unlock()
}

// When etcd compacts past the client's revision while its watch is down,
// the client re-lists and emits the differences, deletes included, and
// tells subscribers to resync — also when its first attempts to re-list fail.
func TestCompactionWhileWatching(t *testing.T) {
	e := setup(t)
	e.set(t, "site.banner", "before", "log.level", "warn")
	f := &flaky{Client: e.etcd}
	c := newClient(t, f)
	rec := &recorder{}
	c.Subscribe("*", rec)
	if c.String("site.banner", "") != "before" {
		t.Fatal("initial")
	}
	f.setCut(true)
	e.cutWatches(t, f)
	e.set(t, "site.banner", "after")
	e.del(t, "log.level")
	last := e.set(t, "taskqueue.max_workers", "99")
	etcdtest.Compact(t, e.etcd)
	f.failGets.Store(2) // the first re-lists fail: the one that succeeds must still tell of the resync
	f.setCut(false)
	eventually(t, "the re-list", func() bool { return c.Revision() >= last && c.String("site.banner", "") == "after" })
	if c.String("log.level", "") != "info" || c.Int("taskqueue.max_workers", 0) != 99 {
		t.Fatal("state after re-list")
	}
	eventually(t, "diff events and a resync", func() bool {
		b, r := rec.Snapshot()
		return len(b) > 0 && len(r) > 0
	})
	b, r := rec.Snapshot()
	kinds := map[string]watch.Kind{}
	for _, ev := range b[len(b)-1].Events {
		kinds[ev.Key] = ev.Kind
	}
	if kinds["site.banner"] != watch.Update || kinds["log.level"] != watch.Delete || kinds["taskqueue.max_workers"] != watch.Put {
		t.Fatalf("diff events: %v", kinds)
	}
	if r[len(r)-1].Reason != "relist" {
		t.Fatalf("resync: %+v", r)
	}
}

// cutWatches makes the client's running watch end: with f cut, the
// client's reconnects fail until f is restored.
func (e *env) cutWatches(t *testing.T, f *flaky) {
	t.Helper()
	// Closing the client's watcher streams ends the running watch; the
	// reconnects then go through f, which is cut.
	f.Client.Watcher.Close()
	f.Client.Watcher = clientv3.NewWatcher(f.Client)
	time.Sleep(50 * time.Millisecond)
}

// A member restart: the client resumes from its revision and misses nothing.
func TestMemberRestart(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	rec := &recorder{}
	c.Subscribe("log.level", rec)
	r1 := e.set(t, "log.level", "warn")
	eventually(t, "first change", func() bool { return rec.Last() == r1 })
	e.m.Restart(t) // etcd's Close waits for open watch streams: this takes seconds
	r2 := e.set(t, "log.level", "error")
	eventually(t, "change after restart", func() bool { return rec.Last() == r2 })
	if c.String("log.level", "") != "error" {
		t.Fatal("cache after restart")
	}
	b, _ := rec.Snapshot()
	if len(b) != 2 {
		t.Fatalf("batches: %+v", b)
	}
}

// The whole cluster down: a client started during the outage serves the
// snapshot, and converges on its own when the cluster returns.
func TestOutageServesSnapshotThenConverges(t *testing.T) {
	e := setup(t)
	snap := filepath.Join(t.TempDir(), "cfg.snapshot")
	e.set(t, "taskqueue.max_workers", "42", "site.banner", "hello")
	first := newClient(t, e.etcd, watch.WithSnapshotFile(snap))
	if first.Int("taskqueue.max_workers", 0) != 42 {
		t.Fatal("first client")
	}
	first.Close() // writes the snapshot
	if _, err := os.Stat(snap); err != nil {
		t.Fatal(err)
	}

	e.m.Stop()
	c := newClient(t, e.etcd, watch.WithSnapshotFile(snap), watch.WithStartTimeout(300*time.Millisecond))
	v, err := c.Lookup("taskqueue.max_workers")
	if err != nil || v.Value != int64(42) || v.Source != watch.SourceSnapshot {
		t.Fatalf("during the outage: %+v %v", v, err)
	}
	if c.Duration("session.idle_timeout", 0) != 15*time.Minute {
		t.Fatal("defaults from the snapshot's schema")
	}
	if c.HasSynced() {
		t.Fatal("synced without etcd")
	}

	e.m.Restart(t)
	e.etcd = e.m.Client(t)
	e.store = kv.New(e.etcd)
	e.set(t, "taskqueue.max_workers", "43")
	eventually(t, "convergence", func() bool {
		v, _ := c.Lookup("taskqueue.max_workers")
		return v.Value == int64(43) && v.Source == watch.SourceCluster
	})
}

// A client with no etcd, no snapshot and no schema of its own cannot serve.
func TestNoEtcdNoSnapshot(t *testing.T) {
	e := setup(t)
	e.m.Stop()
	_, err := watch.New(bg(t), e.etcd, watch.WithStartTimeout(200*time.Millisecond))
	if cfgerr.CodeOf(err) != cfgerr.Unavailable {
		t.Fatalf("want unavailable: %v", err)
	}
}

// requires_restart keys keep their start value; a newer one is pending.
func TestRequiresRestart(t *testing.T) {
	e := setup(t)
	e.set(t, "db.password", "one")
	c := newClient(t, e.etcd, e.keyring(t, ""))
	rec := &recorder{}
	c.Subscribe("db.*", rec)
	e.set(t, "db.password", "two")
	eventually(t, "pending restart", c.RestartRequired)
	if c.String("db.password", "") != "one" {
		t.Fatal("requires_restart key changed without a restart")
	}
	p := c.PendingRestart()
	if len(p) != 1 || p[0].Key != "db.password" || p[0].Value != "two" {
		t.Fatalf("pending: %+v", p)
	}
	eventually(t, "event", func() bool { b, _ := rec.Snapshot(); return len(b) == 1 })
	b, _ := rec.Snapshot()
	if ev := b[0].Events[0]; !ev.RequiresRestart || ev.New != "two" || ev.Old != "one" {
		t.Fatalf("event: %+v", ev)
	}
	e.set(t, "db.password", "one")
	eventually(t, "back to the start value", func() bool { return !c.RestartRequired() })

	// A requires_restart key with no value at start keeps none.
	if _, err := e.store.Apply(bg(t), kv.Meta{}, []kv.Write{{Key: "db.password", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	fresh := newClient(t, e.etcd, e.keyring(t, ""))
	e.set(t, "db.password", "three")
	eventually(t, "pending restart of a key unset at start", fresh.RestartRequired)
	if _, err := fresh.Lookup("db.password"); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("a key unset at start got a value without a restart: %v", err)
	}
}

// With the service's own schema, a cluster value that fails it is rejected
// and the last valid value kept.
func TestServiceSchemaRejects(t *testing.T) {
	e := setup(t)
	e.set(t, "taskqueue.max_workers", "10")
	own, err := schema.Parse([]byte("keys:\n  taskqueue.max_workers: {type: int, default: 4, max: 64}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, e.etcd, watch.WithSchema(own))
	if c.Int("taskqueue.max_workers", 0) != 10 {
		t.Fatal("initial")
	}
	e.set(t, "taskqueue.max_workers", "200") // valid for the cluster, not for this service
	eventually(t, "rejection", func() bool { return len(c.Rejections()) == 1 })
	if c.Int("taskqueue.max_workers", 0) != 10 {
		t.Fatal("the last valid value was not kept")
	}
	if r := c.Rejections()[0]; r.Key != "taskqueue.max_workers" || r.Revision == 0 {
		t.Fatalf("rejection: %+v", r)
	}
	e.set(t, "taskqueue.max_workers", "20")
	eventually(t, "recovery", func() bool { return c.Int("taskqueue.max_workers", 0) == 20 && len(c.Rejections()) == 0 })
}

// A three-member cluster: each member in turn is stopped while writes go
// on; whichever member the client's watch was on, it moves to another and
// misses nothing.
func TestFailoverAcrossMembers(t *testing.T) {
	cl := etcdtest.StartCluster(t, 3)
	etcd := cl.Client(t)
	s := kv.New(etcd)
	doc, _ := os.ReadFile("../examples/schema.yaml")
	if _, err := s.SetSchema(bg(t), kv.Meta{}, doc); err != nil {
		t.Fatal(err)
	}
	e := &env{etcd: etcd, store: s}
	c := newClient(t, etcd)
	rec := &recorder{}
	c.Subscribe("taskqueue.*", rec)
	var want []int64
	for i, m := range cl.Members {
		m.Stop()
		want = append(want, e.set(t, "taskqueue.max_workers", fmt.Sprint(10+i)))
		eventually(t, fmt.Sprintf("the write with member %d down", i), func() bool { return rec.Last() == want[len(want)-1] })
		m.Restart(t)
	}
	b, _ := rec.Snapshot()
	var got []int64
	for _, x := range b {
		got = append(got, x.Revision)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("revisions %v, want %v", got, want)
	}
	if c.Int("taskqueue.max_workers", 0) != 12 {
		t.Fatal("cache")
	}
}

// A member cut off without a reset (its traffic blackholed, connections
// left open): the watch on it stops hearing progress, is deemed stuck and
// restarted, and lands on another member.
func TestStuckMemberIsLeft(t *testing.T) {
	cl := etcdtest.StartCluster(t, 3)
	direct := cl.Client(t)
	s := kv.New(direct)
	doc, _ := os.ReadFile("../examples/schema.yaml")
	if _, err := s.SetSchema(bg(t), kv.Meta{}, doc); err != nil {
		t.Fatal(err)
	}
	e := &env{etcd: direct, store: s}
	p := etcdtest.NewProxy(t, strings.TrimPrefix(cl.Members[0].Endpoint, "http://"))
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + p.Addr}, DialTimeout: 2 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	reg := prometheus.NewRegistry()
	c := newClient(t, etcd, watch.WithRegisterer(reg))
	r := e.set(t, "log.level", "warn")
	eventually(t, "the first write", func() bool { return c.Revision() >= r })

	etcd.SetEndpoints("http://"+p.Addr, cl.Members[1].Endpoint, cl.Members[2].Endpoint)
	p.Blackhole()
	r = e.set(t, "log.level", "error")
	eventually(t, "the write made while the watch's member is cut off", func() bool { return c.String("log.level", "") == "error" })
	if got := counter(t, reg, "cfgcluster_watch_restarts_total", "stuck"); got < 1 {
		t.Fatalf("restarts{reason=stuck} = %v", got)
	}
	if c.Staleness() > 2*time.Second {
		t.Fatalf("staleness %v after moving", c.Staleness())
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// A miss is counted once, whichever getter met it.
func TestStatsCountEachReadOnce(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	c.Int("taskqueue.max_workers", 0) // miss, then cached
	c.Int("taskqueue.max_workers", 0) // hit
	c.Lookup("log.level")             // miss
	c.Lookup("log.level")             // hit
	if st := c.Stats(); st.Misses != 2 || st.Hits != 2 {
		t.Fatalf("stats: %d hits, %d misses; want 2 and 2", st.Hits, st.Misses)
	}
}

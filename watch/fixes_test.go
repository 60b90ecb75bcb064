package watch_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/watch"
)

// Refresh racing the watch never takes the client back: subscribers see
// revisions only go up, and the client ends on etcd's value.
func TestRefreshNeverGoesBack(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	r := &recorder{}
	c.Subscribe("log.level", r)
	ctx, cancel := context.WithCancel(bg(t))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}
	}()
	var last int64
	for i := range 300 {
		last = e.set(t, "log.level", []string{"debug", "info", "warn"}[i%3])
	}
	cancel()
	wg.Wait()
	eventually(t, "the last write", func() bool { return r.Last() == last })
	b, _ := r.Snapshot()
	for i := 1; i < len(b); i++ {
		if b[i].Revision <= b[i-1].Revision {
			t.Fatalf("batch %d has revision %d after %d", i, b[i].Revision, b[i-1].Revision)
		}
	}
	if got := c.String("log.level", ""); got != "warn" {
		t.Fatalf("log.level = %q, etcd has warn", got)
	}
}

// A client ahead of etcd (the cluster was restored from an older snapshot,
// or replaced) notices and follows it, rather than watch from the future.
func TestRestoredClusterIsFollowed(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	for i := range 20 {
		e.set(t, "taskqueue.max_workers", fmt.Sprint(i+1))
	}
	e.set(t, "log.level", "debug")
	eventually(t, "the writes", func() bool { return c.String("log.level", "") == "debug" })
	e.m.Replace(t) // an empty cluster on the same endpoint: revision 1
	doc, _ := os.ReadFile("../examples/schema.yaml")
	fresh := kv.New(e.etcd)
	eventually(t, "the new cluster", func() bool {
		_, err := fresh.SetSchema(bg(t), kv.Meta{}, doc)
		return err == nil
	})
	text := "error"
	r, err := fresh.Apply(bg(t), kv.Meta{}, []kv.Write{{Key: "log.level", Text: &text}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client to follow the restored cluster", func() bool {
		return c.String("log.level", "") == "error" && c.Int("taskqueue.max_workers", -1) == 8 && c.Revision() == r.Revision
	})
}

// countingEtcd counts the reads a client makes.
// countingEtcd counts the reads of the keys in only (every read if none):
// the client's own retries of its list, in the background, are not misses.
type countingEtcd struct {
	watch.Etcd
	only map[string]bool
	gets atomic.Int32
}

func (c *countingEtcd) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if len(c.only) == 0 || c.only[key] {
		c.gets.Add(1)
	}
	return c.Etcd.Get(ctx, key, opts...)
}

// With etcd down at start and no snapshot, a miss answers at once from the
// chain, marked stale: it never waits on etcd.
func TestMissWithEtcdDownNeverWaits(t *testing.T) {
	e := setup(t)
	e.m.Stop()
	sch, err := schema.Parse([]byte("keys:\n  log.level: {type: string, default: info}\n  a.b: {type: int}\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := kv.NewLayout("")
	ce := &countingEtcd{Etcd: e.etcd, only: map[string]bool{l.ValueKey("log.level"): true, l.ValueKey("a.b"): true}}
	c, err := watch.New(bg(t), ce, watch.WithSchema(sch), watch.WithStartTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := ce.gets.Load()
	v, err := c.Lookup("log.level")
	if err != nil || v.Value != "info" || v.Source != watch.SourceDefault || !v.Stale {
		t.Fatalf("lookup: %+v %v", v, err)
	}
	if _, err := c.Lookup("a.b"); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("a key with no default: %v", err)
	}
	if n := ce.gets.Load() - before; n != 0 {
		t.Fatalf("a miss made %d etcd reads of the keys looked up", n)
	}
}

// WaitRevision returning means the cache has the revision's values; Close
// wakes a waiter.
func TestWaitRevisionMeansCached(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	c.String("log.level", "") // cached: the watch refreshes it in place
	for i := range 200 {
		want := []string{"debug", "info", "warn"}[i%3]
		rev := e.set(t, "log.level", want)
		if err := c.WaitRevision(bg(t), rev); err != nil {
			t.Fatal(err)
		}
		if got := c.String("log.level", ""); got != want {
			t.Fatalf("after WaitRevision(%d): %q, want %q", rev, got, want)
		}
	}
	done := make(chan error)
	go func() { done <- c.WaitRevision(context.Background(), c.Revision()+1000) }()
	c.Close()
	if err := <-done; cfgerr.CodeOf(err) != cfgerr.Unavailable {
		t.Fatalf("a waiter after Close: %v", err)
	}
}

// A handler may close the client, or unsubscribe itself, without deadlock;
// after Unsubscribe returns no call of its handler starts.
func TestHandlersMayCloseAndUnsubscribe(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	var self *watch.Subscription
	unsubscribed := make(chan bool, 1)
	self = c.Subscribe("log.level", watch.HandlerFuncs{BatchFunc: func(watch.Batch) {
		unsubscribed <- c.Unsubscribe(self)
	}})
	e.set(t, "log.level", "warn")
	if !<-unsubscribed {
		t.Fatal("a handler could not unsubscribe itself")
	}

	var after atomic.Bool
	var late atomic.Int32
	for i := range 50 {
		s := c.Subscribe("taskqueue.max_workers", watch.HandlerFuncs{BatchFunc: func(watch.Batch) {
			if after.Load() {
				late.Add(1)
			}
			time.Sleep(time.Millisecond)
		}})
		e.set(t, "taskqueue.max_workers", fmt.Sprint(i+1))
		c.Unsubscribe(s)
		after.Store(true)
		e.set(t, "taskqueue.max_workers", fmt.Sprint(i+100))
		after.Store(false)
	}
	if n := late.Load(); n != 0 {
		t.Fatalf("%d handler calls started after Unsubscribe returned", n)
	}

	closed := make(chan struct{})
	c.Subscribe("site.banner", watch.HandlerFuncs{BatchFunc: func(watch.Batch) {
		c.Close()
		close(closed)
	}})
	e.set(t, "site.banner", "bye")
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close from a handler deadlocked")
	}
}

// A sensitive value a service's schema refuses is never in the rejection it
// reports (to the instance registry, GET /v1/instances) nor in its logs.
func TestRejectedSecretsStaySecret(t *testing.T) {
	e := setup(t)
	own, err := schema.Parse([]byte("keys:\n  db.password: {type: string, sensitive: true, pattern: '^$'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.set(t, "log.level", "warn") // the first data key is made with the first sealed value
	e.set(t, "db.password", "x")
	c := newClient(t, e.etcd, watch.WithSchema(own), watch.WithLogger(zap.New(core)), e.keyring(t, ""))
	e.set(t, "db.password", "hunter2")
	eventually(t, "the rejection", func() bool { return len(c.Rejections()) == 1 })
	if r := c.Rejections()[0]; strings.Contains(r.Reason, "hunter2") {
		t.Fatalf("the rejection holds the secret: %q", r.Reason)
	}
	if rep := c.InstanceReport(); len(rep.Rejected) != 1 || strings.Contains(rep.Rejected[0].Reason, "hunter2") {
		t.Fatalf("the report: %+v", rep.Rejected)
	}
	for _, l := range logs.All() {
		if strings.Contains(fmt.Sprint(l.Message, l.ContextMap()), "hunter2") {
			t.Fatalf("a log line holds the secret: %s %v", l.Message, l.ContextMap())
		}
	}
}

package integration

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/watch"
)

// Observer is a watch client on every member of a cluster, as a service
// would run it, recording every batch it is given.
type Observer struct {
	C       *watch.Client
	etcd    *clientv3.Client
	mu      sync.Mutex
	batches []watch.Batch
	resyncs []watch.Resync
	from    int64
}

func (o *Observer) add(b watch.Batch) {
	o.mu.Lock()
	o.batches = append(o.batches, b)
	o.mu.Unlock()
}

func (o *Observer) resync(r watch.Resync) {
	o.mu.Lock()
	o.resyncs = append(o.resyncs, r)
	o.mu.Unlock()
}

// Observe starts an observer; the test's cleanup closes it.
func (cl *Cluster) Observe(t *testing.T) *Observer {
	t.Helper()
	etcd, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := watch.New(ctx, etcd, watch.WithProgressInterval(300*time.Millisecond), watch.WithQueueSize(100000))
	if err != nil {
		t.Fatal(err)
	}
	o := &Observer{C: c, etcd: etcd, from: c.Revision()}
	c.Subscribe("*", watch.HandlerFuncs{BatchFunc: o.add, ResyncFunc: o.resync})
	t.Cleanup(func() { c.Close(); etcd.Close() })
	return o
}

// Check fails the test unless Verify passes.
func (o *Observer) Check(t *testing.T, cl *Cluster) {
	t.Helper()
	n, err := o.Verify()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("watch: %d batches in order, none missing, cache equal to etcd", n)
}

// Verify checks that, within 10 s, the observer has been given every change
// committed since it started: each revision once, in order, each
// transaction whole — and that its cache then equals a linearizable read of
// every key. After a re-list (compaction), the diff batch stands for the
// revisions it covers. It returns the number of batches.
func (o *Observer) Verify() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := kv.New(o.etcd)
	recs, err := store.Audit(ctx, kv.AuditQuery{Limit: 100000})
	if err != nil {
		return 0, err
	}
	want := map[int64][]string{}
	var last int64
	for _, r := range recs {
		if r.Revision <= o.from || len(r.Changes) == 0 || r.SchemaChanged {
			continue
		}
		for _, c := range r.Changes {
			want[r.Revision] = append(want[r.Revision], c.Key)
		}
		last = max(last, r.Revision)
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.C.Revision() < last && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the workers hand out the last batches
	o.mu.Lock()
	got, resyncs := slices.Clone(o.batches), slices.Clone(o.resyncs)
	o.mu.Unlock()
	seen := map[int64]bool{}
	for i, b := range got {
		if i > 0 && b.Revision <= got[i-1].Revision {
			return 0, fmt.Errorf("watch: revision %d after %d (reordered or duplicated)", b.Revision, got[i-1].Revision)
		}
		var keys []string
		for _, e := range b.Events {
			keys = append(keys, e.Key)
		}
		w := want[b.Revision]
		sort.Strings(keys)
		sort.Strings(w)
		if !slices.Equal(keys, w) && len(resyncs) == 0 {
			return 0, fmt.Errorf("watch: revision %d gave %v, the transaction wrote %v", b.Revision, keys, w)
		}
		seen[b.Revision] = true
	}
	for rev := range want {
		if !seen[rev] && len(resyncs) == 0 {
			return 0, fmt.Errorf("watch: revision %d (%v) was never delivered (a gap)", rev, want[rev])
		}
	}
	// The cache equals a linearizable read at the same revision.
	sch, _, _, err := store.Schema(ctx)
	if err != nil {
		return 0, err
	}
	for _, k := range sch.KeyNames() {
		e, err := store.Get(ctx, k, 0)
		v, verr := o.C.Lookup(k)
		if (err == nil) != (verr == nil) || err == nil && !schema.Equal(e.Value, v.Value) {
			return 0, fmt.Errorf("cache of %s: %v (%v); etcd: %v (%v)", k, v.Value, verr, e, err)
		}
	}
	return len(got), nil
}

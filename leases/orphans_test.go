package leases_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/kv"
	"cfgcluster/leases"
	"cfgcluster/watch"
)

// ambiguousKV commits a transaction, then answers as if it timed out: the
// outcome a client sees when the answer is lost.
type ambiguousKV struct {
	clientv3.KV
	armed atomic.Bool
}

func (a *ambiguousKV) Txn(ctx context.Context) clientv3.Txn { return &ambiguousTxn{a.KV.Txn(ctx), a} }

type ambiguousTxn struct {
	clientv3.Txn
	a *ambiguousKV
}

func (t *ambiguousTxn) If(c ...clientv3.Cmp) clientv3.Txn  { t.Txn = t.Txn.If(c...); return t }
func (t *ambiguousTxn) Then(o ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(o...); return t }
func (t *ambiguousTxn) Else(o ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(o...); return t }
func (t *ambiguousTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err == nil && t.a.armed.CompareAndSwap(true, false) {
		return nil, context.DeadlineExceeded
	}
	return resp, err
}

// A window whose opening answered with an error of unknown outcome, but
// was in fact opened, stays open: its lease is not revoked.
func TestAmbiguousOpenKeepsTheWindow(t *testing.T) {
	m, c, s := setup(t)
	fc := m.Client(t)
	akv := &ambiguousKV{KV: fc.KV}
	fc.KV = akv
	mt := leases.NewMaintenance(fc, kv.New(fc), 0)
	akv.armed.Store(true)
	if _, err := mt.Enable(bg(t), "billing", "upgrade", "alice", time.Hour); err != nil {
		t.Logf("enable answered %v (the window was opened all the same)", err)
	}
	_, open, err := leases.NewMaintenance(c, s, 0).Status(bg(t), "billing")
	if err != nil || !open {
		t.Fatalf("the opened window was lost: open %v, %v", open, err)
	}
}

// Replacing, ending or cancelling a window revokes the lease it no longer
// uses: nothing piles up.
func TestNoOrphanLeases(t *testing.T) {
	_, c, s := setup(t)
	m := leases.NewMaintenance(c, s, 0)
	ctx := bg(t)
	if _, err := m.Enable(ctx, "billing", "upgrade", "alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Extend(ctx, "billing", "bob", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.End(ctx, "billing", "bob"); err != nil {
		t.Fatal(err)
	}
	w, err := m.Schedule(ctx, "search", "reindex", "carol", time.Now().Add(time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Cancel(ctx, w.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	ls, err := c.Leases(ctx)
	if err != nil || len(ls.Leases) != 0 {
		t.Fatalf("%d leases left: %v", len(ls.Leases), err)
	}
}

// Idle registered instances write nothing: liveness rides on their leases,
// and a report is written only when it changes.
func TestIdleInstancesWriteNothing(t *testing.T) {
	_, c, _ := setup(t)
	ctx := bg(t)
	wc, err := watch.New(ctx, c, watch.WithProgressInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	const n = 1000
	regs := make([]*leases.Registration, n)
	for i := range regs {
		regs[i], err = leases.Register(ctx, c, wc.Layout(), kv.Instance{Service: "api", ID: fmt.Sprint("i", i)}, wc,
			leases.WithReportInterval(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, r := range regs {
			r.Close()
		}
	}()
	rev := func() int64 {
		r, err := c.Get(ctx, "probe")
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	start := rev()
	// Long enough for many progress notifications and report intervals.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if now := rev(); now != start {
			t.Fatalf("%d idle instances wrote %d revisions", n, now-start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ins, _, err := leases.Instances(ctx, c, wc.Layout(), "api")
	if err != nil || len(ins) != n {
		t.Fatalf("%d instances live, %v", len(ins), err)
	}
}

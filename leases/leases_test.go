package leases_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/leases"
	"cfgcluster/watch"
)

func TestMain(m *testing.M) { etcdtest.VerifyNoLeaks(m) }

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func setup(t *testing.T) (*etcdtest.Member, *clientv3.Client, *kv.Store) {
	t.Helper()
	m, c := etcdtest.Start(t)
	s := kv.New(c)
	doc, _ := os.ReadFile("../examples/schema.yaml")
	if _, err := s.SetSchema(bg(t), kv.Meta{}, doc); err != nil {
		t.Fatal(err)
	}
	return m, c, s
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWindowLifecycle(t *testing.T) {
	_, c, s := setup(t)
	m := leases.NewMaintenance(c, s, 0)
	ctx := bg(t)
	wc, err := watch.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()

	w, err := m.Enable(ctx, "billing", "db upgrade", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "clients to see the window", 2*time.Second, func() bool { return wc.IsMaintenance("billing") })
	if wc.IsMaintenance("search") {
		t.Fatal("a billing window put search in maintenance")
	}
	if got, _ := wc.Maintenance("billing"); got.Reason != "db upgrade" || got.Author != "alice" || !got.End.Equal(w.End) ||
		wc.MaintenanceReason("billing") != "db upgrade" {
		t.Fatalf("client sees %+v", got)
	}
	if _, err := m.Enable(ctx, "billing", "again", "bob", time.Hour); cfgerr.CodeOf(err) != cfgerr.Conflict {
		t.Fatalf("second window on one scope: %v", err)
	}
	for _, bad := range []struct {
		scope, reason string
		d             time.Duration
	}{{"Billing!", "x", time.Hour}, {"billing.eu", "x", time.Hour}, {"search", "", time.Hour}, {"search", "x", 0}, {"search", "x", 31 * 24 * time.Hour}} {
		if _, err := m.Enable(ctx, bad.scope, bad.reason, "bob", bad.d); cfgerr.CodeOf(err) != cfgerr.Invalid {
			t.Errorf("Enable(%q, %q, %v): %v", bad.scope, bad.reason, bad.d, err)
		}
	}
	ext, err := m.Extend(ctx, "billing", "bob", 30*time.Minute)
	if err != nil || !ext.End.Equal(w.End.Add(30*time.Minute)) || !ext.Start.Equal(w.Start) {
		t.Fatalf("extend: %+v %v", ext, err)
	}
	st, open, err := m.Status(ctx, "billing")
	if err != nil || !open || !st.End.Equal(ext.End) {
		t.Fatalf("status: %+v %v %v", st, open, err)
	}
	if _, err := m.Enable(ctx, kv.GlobalScope, "network", "carol", time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, "global window", 2*time.Second, func() bool { return wc.IsMaintenance("search") })
	openWs, _, err := m.List(ctx)
	if err != nil || len(openWs) != 2 {
		t.Fatalf("list: %v %v", openWs, err)
	}
	if _, err := m.End(ctx, "billing", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.End(ctx, kv.GlobalScope, "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the windows to close", 2*time.Second, func() bool { return !wc.IsMaintenance("billing") })
	if _, err := m.End(ctx, "billing", "bob"); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("end of a closed window: %v", err)
	}
	h, err := m.History(ctx, 10)
	if err != nil || len(h) != 5 || h[0].Action != leases.ActionOff || h[4].Action != leases.ActionOn {
		t.Fatalf("history: %d records %v", len(h), err)
	}
}

// A window closes on time with no node left to close it: clients go by its
// end time, and its key disappears with its lease.
func TestWindowClosesWithEveryNodeGone(t *testing.T) {
	mem, c, s := setup(t)
	ctx := bg(t)
	wc, err := watch.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	writer := mem.Client(t)
	w, err := leases.NewMaintenance(writer, kv.New(writer), time.Second).Enable(ctx, "billing", "short", "ops", 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	writer.Close() // every node that could end the window is gone
	eventually(t, "the window to open", 2*time.Second, func() bool { return wc.IsMaintenance("billing") })
	eventually(t, "the window to close", 3*time.Second, func() bool { return !wc.IsMaintenance("billing") })
	if late := time.Since(w.End); late > 100*time.Millisecond {
		t.Fatalf("closed %v after its end", late)
	}
	eventually(t, "the key to expire with its lease", 10*time.Second, func() bool {
		r, err := c.Get(ctx, s.Layout().MaintenanceKey("billing"))
		return err == nil && len(r.Kvs) == 0
	})
}

// Three nodes run schedulers; the leader is killed just before a window's
// start; another node opens it on time, and only once.
func TestScheduledWindowSurvivesLeaderKill(t *testing.T) {
	mem, c, s := setup(t)
	ctx := bg(t)
	type node struct {
		cli   *clientv3.Client
		sched *leases.Scheduler
	}
	var nodes []node
	for _, name := range []string{"n1", "n2", "n3"} {
		cli := mem.Client(t)
		sc := leases.StartScheduler(ctx, leases.NewMaintenance(cli, kv.New(cli), time.Second), name, 1)
		t.Cleanup(sc.Close)
		nodes = append(nodes, node{cli, sc})
	}
	var leader int
	eventually(t, "a leader", 10*time.Second, func() bool {
		for i, n := range nodes {
			if n.sched.IsLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	start := time.Now().Add(1500 * time.Millisecond)
	w, err := leases.NewMaintenance(c, s, time.Second).Schedule(ctx, "billing", "planned", "ops", start, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(start.Add(-300 * time.Millisecond)))
	nodes[leader].sched.Close()
	nodes[leader].cli.Close() // killed: no resign; its session lease lingers until its TTL

	wc, err := watch.New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	eventually(t, "the window to open", 5*time.Second, func() bool { return wc.IsMaintenance("billing") })
	opened := time.Now()
	if late := opened.Sub(start); late > time.Second {
		t.Fatalf("opened %v late", late)
	}
	time.Sleep(500 * time.Millisecond) // a second open, if any, would have happened by now
	var total int64
	for i, n := range nodes {
		if i != leader {
			total += n.sched.Opened()
		}
	}
	recs, _ := s.Audit(ctx, kv.AuditQuery{Limit: 100})
	ons := 0
	for _, r := range recs {
		if r.Action == leases.ActionOn && strings.Contains(r.Comment, "planned") {
			ons++
		}
	}
	if total != 1 || ons != 1 {
		t.Fatalf("opened %d times by the survivors, %d audit records", total, ons)
	}
	got, _ := wc.Maintenance("billing")
	if got.ID != w.ID || !got.End.Equal(w.End) {
		t.Fatalf("opened %+v, scheduled %+v", got, w)
	}
}

type fixedReport struct{ applied atomic.Int64 }

func (f *fixedReport) InstanceReport() kv.Report { return kv.Report{Applied: f.applied.Load()} }

// An instance stays registered while it lives, reports what it applied,
// and vanishes within its TTL when it dies without a word.
func TestRegistry(t *testing.T) {
	mem, c, s := setup(t)
	ctx := bg(t)
	rep := &fixedReport{}
	rep.applied.Store(5)
	reg, err := leases.Register(ctx, c, s.Layout(), kv.Instance{Service: "billing", ID: "b-1", Version: "1.2"}, rep,
		leases.WithReportInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	list := func() []*kv.Instance {
		in, _, err := leases.Instances(ctx, c, s.Layout(), "billing")
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	if in := list(); len(in) != 1 || in[0].Applied != 5 || in[0].Version != "1.2" || in[0].Host == "" {
		t.Fatalf("instances: %+v", in)
	}
	rep.applied.Store(9)
	eventually(t, "the new report", 2*time.Second, func() bool { in := list(); return len(in) == 1 && in[0].Applied == 9 })
	reg.Close()
	if in := list(); len(in) != 0 {
		t.Fatal("a closed registration is still listed")
	}
	if _, err := leases.Register(ctx, c, s.Layout(), kv.Instance{Service: kv.GlobalScope}, rep); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("service named global: %v", err)
	}

	// A process killed with SIGKILL: its client stops without revoking.
	dying := mem.Client(t)
	dead, err := leases.Register(ctx, dying, s.Layout(), kv.Instance{Service: "billing", ID: "b-2"}, rep, leases.WithTTL(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close() // its owner still stops its goroutine
	if len(list()) != 1 {
		t.Fatal("not registered")
	}
	dying.Close()
	eventually(t, "the dead instance to vanish", 5*time.Second, func() bool { return len(list()) == 0 })
}

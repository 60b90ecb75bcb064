package kv_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// runIndex runs an index of c's trail until the test ends, and returns a
// store that reads the trail through it, with the store's metrics.
func runIndex(t *testing.T, c *clientv3.Client) (*kv.Store, *prometheus.Registry) {
	t.Helper()
	ix := kv.NewAuditIndex(c, kv.NewLayout(""), zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ix.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	reg := prometheus.NewRegistry()
	return kv.New(c, kv.WithProvider(kek), kv.WithAuditIndex(ix), kv.WithMetrics(kv.NewMetrics(reg))), reg
}

func auditReads(t *testing.T, reg *prometheus.Registry, path string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cfgcluster_kv_audit_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == path {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// The index answers every read of the trail exactly as etcd's own sorted
// reads do: the whole trail and a key's or a prefix's records, page by page
// from any revision, and a key's history — over records it loaded at start
// and records it watched arrive, after pruning deleted some of each.
func TestAuditIndexAnswersAsEtcd(t *testing.T) {
	plain, c := newStore(t)
	write := func(i int) {
		t.Helper()
		ws := []kv.Write{{Key: "taskqueue.max_workers", Text: text(fmt.Sprint(i%200 + 1))}}
		switch i % 5 {
		case 1: // one record, two keys under one prefix
			ws = append(ws, kv.Write{Key: "taskqueue.task_timeout", Text: text(fmt.Sprintf("%ds", i+1))})
		case 2:
			ws = []kv.Write{{Key: "log.level", Text: text([]string{"debug", "info", "warn"}[i%3])}}
		case 3:
			ws = append(ws, kv.Write{Key: "site.banner", Text: text(fmt.Sprint("banner ", i))})
		case 4:
			ws = []kv.Write{{Key: "site.banner", Delete: true}}
		}
		if _, err := plain.Apply(ctx(t), kv.Meta{Actor: "alice", Action: kv.ActionSet}, ws); err != nil && i%5 != 4 {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		write(i)
	}
	if _, err := plain.PruneAudit(ctx(t), kv.Retention{MaxRecords: 30}); err != nil {
		t.Fatal(err)
	}
	indexed, reg := runIndex(t, c) // loads the trail as it is now
	for i := 40; i < 100; i++ {
		write(i) // and watches these arrive
	}
	if _, err := plain.PruneAudit(ctx(t), kv.Retention{MaxRecords: 70}); err != nil {
		t.Fatal(err)
	}
	write(100)

	type query struct {
		key    string
		prefix bool
		limit  int
	}
	checked := 0
	for _, q := range []query{{"", false, 1}, {"", false, 7}, {"", false, 0}, {"taskqueue.max_workers", false, 9},
		{"taskqueue.", true, 4}, {"site.banner", false, 3}, {"", true, 1000}, {"nosuch.key", false, 5}} {
		// Page through everything, from the newest, as a client does.
		for before := int64(0); ; {
			aq := kv.AuditQuery{Key: q.key, Prefix: q.prefix, Before: before, Limit: q.limit}
			want, err := plain.Audit(ctx(t), aq)
			if err != nil {
				t.Fatal(err)
			}
			got, err := indexed.Audit(ctx(t), aq)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ids(got)) != fmt.Sprint(ids(want)) {
				t.Fatalf("%+v:\nindex %v\netcd  %v", aq, ids(got), ids(want))
			}
			checked++
			if len(want) == 0 {
				break
			}
			before = want[len(want)-1].Revision
		}
	}
	for _, key := range []string{"taskqueue.max_workers", "site.banner", "log.level"} {
		for _, limit := range []int{1, 5, 1000} {
			want, err := plain.History(ctx(t), key, limit)
			if err != nil {
				t.Fatal(err)
			}
			got, err := indexed.History(ctx(t), key, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("history of %s (%d): %d entries from the index, %d from etcd", key, limit, len(got), len(want))
			}
			for i := range want {
				if *got[i] != *want[i] {
					t.Fatalf("history of %s, entry %d:\nindex %+v\netcd  %+v", key, i, got[i], want[i])
				}
			}
			checked++
		}
	}
	if n := auditReads(t, reg, "index"); n < checked || auditReads(t, reg, "etcd") != 0 {
		t.Fatalf("%d reads through the index, %d from etcd, of %d", n, auditReads(t, reg, "etcd"), checked)
	}
}

// A read of the trail through the index sees every change committed before
// it began, though the index learns of them through a watch: written
// through another store (another node), and after the member restarted
// under the index's watch.
func TestAuditIndexReadsItsOwnWrites(t *testing.T) {
	m, c := etcdtest.Start(t)
	plain := kv.New(c, kv.WithProvider(kek))
	if _, err := plain.SetSchema(ctx(t), kv.Meta{Actor: "test"}, []byte("keys:\n  taskqueue.max_workers: {type: int}\n")); err != nil {
		t.Fatal(err)
	}
	indexed, reg := runIndex(t, c)
	check := func(i int) {
		t.Helper()
		res := set(t, plain, "taskqueue.max_workers", fmt.Sprint(i%200+1))
		recs, err := indexed.Audit(ctx(t), kv.AuditQuery{Limit: 1})
		if err != nil || len(recs) != 1 || recs[0].Revision != res.Revision {
			t.Fatalf("write %d at revision %d: newest record %v, %v", i, res.Revision, ids(recs), err)
		}
		h, err := indexed.History(ctx(t), "taskqueue.max_workers", 1)
		if err != nil || len(h) != 1 || h[0].Revision != res.Revision {
			t.Fatalf("write %d at revision %d: history %+v, %v", i, res.Revision, h, err)
		}
	}
	for i := range 100 {
		check(i)
	}
	m.Restart(t)
	for i := range 10 {
		check(i)
	}
	if n := auditReads(t, reg, "etcd"); n != 0 {
		t.Fatalf("%d reads went to etcd", n)
	}
}

func ids(recs []*kv.AuditRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%d/%s", r.Revision, r.ID))
	}
	return out
}

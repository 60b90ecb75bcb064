package kv_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// Pruning keeps history whole within the retention: a key unchanged since
// long before the cut still reads right at any retained revision, past
// compaction too.
func TestPruneKeepsHistoryWithinRetention(t *testing.T) {
	s, c := newStore(t)
	set(t, s, "site.banner", "old") // never changed again
	for i := range 30 {
		set(t, s, "taskqueue.max_workers", fmt.Sprint(i+1))
	}
	keep := set(t, s, "log.level", "warn")
	set(t, s, "taskqueue.max_workers", "99")
	pruned, err := s.PruneAudit(ctx(t), kv.Retention{MaxRecords: 2})
	if err != nil || pruned != 32 { // all but the newest two of 34
		t.Fatalf("pruned %d, %v", pruned, err)
	}
	recs, _ := s.Audit(ctx(t), kv.AuditQuery{})
	if len(recs) != 2 || recs[1].Revision != keep.Revision {
		t.Fatalf("kept %d records", len(recs))
	}
	etcdtest.Compact(t, c)
	for key, want := range map[string]any{"site.banner": "old", "taskqueue.max_workers": int64(30), "log.level": "warn"} {
		e, err := s.Get(ctx(t), key, keep.Revision)
		if err != nil || e.Value != want {
			t.Errorf("%s at %d: %+v %v", key, keep.Revision, e, err)
		}
	}
	if h, err := s.History(ctx(t), "taskqueue.max_workers", 0); err != nil || len(h) != 2 || h[1].Value != int64(30) {
		t.Fatalf("history after pruning: %d entries, %v", len(h), err)
	}
	// By age: everything older than now goes but each key's state.
	if _, err := s.PruneAudit(ctx(t), kv.Retention{MaxAge: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Get(ctx(t), "taskqueue.max_workers", keep.Revision+1); err != nil || e.Value != int64(99) {
		t.Fatalf("after pruning by age: %+v %v", e, err)
	}
}

// A long run of large writes stays below etcd's quota when the trail is
// pruned and etcd compacted, as a node does; without pruning it fills etcd.
func TestLargeWritesStayBelowQuota(t *testing.T) {
	const quota = 24 << 20
	m, c := etcdtest.Start(t, func(cfg *embed.Config) { cfg.QuotaBackendBytes = quota })
	s := kv.New(c)
	doc, _ := os.ReadFile("../examples/schema.yaml")
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, doc); err != nil {
		t.Fatal(err)
	}
	blob := strings.Repeat("x", 100<<10)
	for i := range 300 { // 30 MiB of values, 60 MiB with their index entries
		if _, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionSet}, []kv.Write{{Key: "billing.limits", Value: map[string]any{"n": int64(i), "blob": blob}}}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i%10 == 9 {
			if _, err := s.PruneAudit(ctx(t), kv.Retention{MaxRecords: 20}); err != nil {
				t.Fatal(err)
			}
			etcdtest.Compact(t, c)
		}
	}
	st, err := c.Status(ctx(t), m.Endpoint)
	if err != nil || st.DbSize > quota {
		t.Fatalf("db size %d, %v", st.DbSize, err)
	}
	t.Logf("db size after 300 writes of 100 KiB: %d MiB (in use %d MiB)", st.DbSize>>20, st.DbSizeInUse>>20)
}

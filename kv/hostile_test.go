package kv_test

import (
	"encoding/json"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// A value the store could not read back is refused before it is written, and
// an audit record that cannot be decoded is an error naming it, never skipped.
func TestNothingHiddenFromTheAuditTrail(t *testing.T) {
	s, c := newStore(t)
	before := rev(t, c)
	for _, doc := range []string{`{"daily": 1e400}`, strings.Repeat(`{"a":`, 9990) + "1" + strings.Repeat("}", 9990)} {
		var v any
		d := json.NewDecoder(strings.NewReader(doc))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		_, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "billing.limits", Value: v}})
		if cfgerr.CodeOf(err) != cfgerr.Invalid || !strings.Contains(err.Error(), "billing.limits") {
			t.Fatalf("%.30s…: %v", doc, err)
		}
	}
	if rev(t, c) != before {
		t.Fatal("a refused value was written")
	}
	set(t, s, "log.level", "warn")
	if _, err := c.Put(ctx(t), s.Layout().AuditPrefix()+"99999999999999999999-bad", `{"changes": [{"old": 1e400}]}`); err != nil {
		t.Fatal(err)
	}
	_, err := s.Audit(ctx(t), kv.AuditQuery{})
	if err == nil || !strings.Contains(err.Error(), "99999999999999999999-bad") {
		t.Fatalf("a corrupt audit record was skipped: %v", err)
	}
}

// Large values keep the trail readable: a record stays small (a large value
// is kept once, in the key's index entry), reads of the trail and of a
// key's history are bounded, and history reads only that key's entries.
func TestAuditTrailWithLargeValues(t *testing.T) {
	s, c := newStore(t)
	big := func(i int) map[string]any {
		return map[string]any{"daily": int64(i), "blob": strings.Repeat(string(rune('a'+i%26)), 1000<<10)}
	}
	var last *kv.Result
	for i := range 20 {
		r, err := s.Apply(ctx(t), kv.Meta{Actor: "bulk", Action: kv.ActionSet}, []kv.Write{{Key: "billing.limits", Value: big(i)}})
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	set(t, s, "log.level", "warn")
	resp, err := c.Get(ctx(t), s.Layout().AuditPrefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if len(kv.Value) > 4<<10 {
			t.Fatalf("audit record %s is %d bytes", kv.Key, len(kv.Value))
		}
	}
	recs, err := s.Audit(ctx(t), kv.AuditQuery{Limit: 1000})
	if err != nil || len(recs) != 22 || !recs[1].Changes[0].NewOmitted || !recs[1].Changes[0].OldOmitted {
		t.Fatalf("audit: %d records, %v", len(recs), err)
	}
	h, err := s.History(ctx(t), "billing.limits", 1000)
	if err != nil || len(h) == 0 || len(h) == 20 || h[0].Revision != last.Revision {
		t.Fatalf("history of 20 values of 1 MiB: %d entries (want fewer, bounded by bytes), %v", len(h), err)
	}
	if v := h[0].Value.(map[string]any)["daily"]; v != json.Number("19") && v != float64(19) && v != int64(19) {
		t.Fatalf("newest value: %v", v)
	}
	// Past compaction, a value comes from its index entry whole.
	etcdtest.Compact(t, c)
	e, err := s.Get(ctx(t), "billing.limits", last.Revision-1)
	if err != nil || len(e.Value.(map[string]any)["blob"].(string)) != 1000<<10 {
		t.Fatalf("value past compaction: %v", err)
	}
	// Who and why are bounded too.
	if _, err := s.Apply(ctx(t), kv.Meta{Actor: strings.Repeat("a", 1<<20)}, []kv.Write{{Key: "log.level", Text: text("info")}}); cfgerr.First(err) == nil || cfgerr.First(err).Field != "actor" {
		t.Fatalf("a 1 MiB actor: %v", err)
	}
	if _, err := s.Apply(ctx(t), kv.Meta{Comment: strings.Repeat("c", 5000)}, []kv.Write{{Key: "log.level", Text: text("info")}}); cfgerr.First(err) == nil || cfgerr.First(err).Field != "comment" {
		t.Fatalf("a long comment: %v", err)
	}
}

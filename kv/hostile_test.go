package kv_test

import (
	"encoding/json"
	"strings"
	"testing"

	"cfgcluster/cfgerr"
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

package kv_test

import (
	"strings"
	"testing"
	"time"

	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// The past is read as it was: a schema tightened since never breaks
// history, diff or reads at a revision, before or after compaction.
func TestPastValuesSurviveSchemaTightening(t *testing.T) {
	s, c := newStore(t)
	old := set(t, s, "session.idle_timeout", "3h")
	set(t, s, "session.idle_timeout", "1h")
	doc := strings.Replace(string(exampleSchema(t)), "min: 1m, max: 24h", "min: 1m, max: 2h", 1)
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		h, err := s.History(ctx(t), "session.idle_timeout", 0)
		if err != nil || len(h) != 2 || h[1].Value != 3*time.Hour {
			t.Fatalf("%s: history: %+v %v", when, h, err)
		}
		e, err := s.Get(ctx(t), "session.idle_timeout", old.Revision)
		if err != nil || e.Value != 3*time.Hour {
			t.Fatalf("%s: value at %d: %+v %v", when, old.Revision, e, err)
		}
		d, err := s.Diff(ctx(t), "session.idle_timeout", old.Revision, 0)
		if err != nil || !d.Changed || d.From.Value != 3*time.Hour || d.To.Value != time.Hour {
			t.Fatalf("%s: diff: %+v %v", when, d, err)
		}
	}
	check("before compaction")
	etcdtest.Compact(t, c)
	check("after compaction")
}

// A value written while its key was sensitive stays marked sensitive after
// the key leaves the schema, so no reader shows it in clear.
func TestSensitiveMarkOutlivesTheSchema(t *testing.T) {
	s, _ := newStore(t)
	doc := string(exampleSchema(t))
	withSecret := strings.Replace(doc, "rules:", "  old.token: {type: string, sensitive: true}\nrules:", 1)
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(withSecret)); err != nil {
		t.Fatal(err)
	}
	r := set(t, s, "old.token", "hunter2")
	if _, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "old.token", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(ctx(t), "old.token", r.Revision)
	if err != nil || !e.Sensitive {
		t.Fatalf("value at %d: %+v %v", r.Revision, e, err)
	}
	h, err := s.History(ctx(t), "old.token", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range h {
		if !x.Deleted && !x.Sensitive {
			t.Fatalf("history entry %d not marked sensitive: %+v", x.Revision, x)
		}
	}
}

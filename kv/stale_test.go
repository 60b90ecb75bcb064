package kv_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// Two stores over one etcd are two nodes. A node's view of what it last saw
// is only a guess: no refusal may rest on it before etcd confirms it.
func TestStaleViewNeverRefusesValidWrites(t *testing.T) {
	a, c := newStore(t)
	b := kv.New(c)

	// The rule: a last saw absolute=2h; b raises it to 8h; idle=3h is valid.
	set(t, a, "session.absolute_timeout", "2h")
	set(t, a, "session.idle_timeout", "1h")
	set(t, b, "session.absolute_timeout", "8h")
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "session.idle_timeout", Text: text("3h")}}); err != nil {
		t.Fatalf("a refused a valid write from its stale view: %v", err)
	}

	// expect_revision equal to the key's current revision, set through b.
	set(t, a, "log.level", "warn")
	r := set(t, b, "log.level", "error")
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "log.level", Text: text("debug"), ExpectRevision: &r.Revision}}); err != nil {
		t.Fatalf("expect_revision at the current revision: %v", err)
	}

	// Deleting a value set through b, where a last saw none.
	if r, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "site.banner", Delete: true}}); err != nil || len(r.Unchanged) != 1 {
		t.Fatalf("delete of a value that is not there: %+v %v", r, err)
	}
	set(t, b, "site.banner", "sale")
	// a last saw no value, so the delete looks done already: etcd must
	// confirm that before a says so.
	if r, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "site.banner", Delete: true}}); err != nil || len(r.Changes) != 1 || len(r.Unchanged) != 0 {
		t.Fatalf("delete of a value set elsewhere: %+v %v", r, err)
	}

	// A schema change through b widens a range a knows narrower.
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "taskqueue.max_workers", Text: text("300")}}); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("300 workers under the old schema: %v", err)
	}
	doc := strings.Replace(string(exampleSchema(t)), "min: 1, max: 256", "min: 1, max: 512", 1)
	if _, err := b.SetSchema(ctx(t), kv.Meta{}, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "taskqueue.max_workers", Text: text("300")}}); err != nil {
		t.Fatalf("a write the widened schema allows: %v", err)
	}
	// A dry run answers from the confirmed state too.
	set(t, b, "session.absolute_timeout", "4h") // a last saw 8h
	if _, err := a.Apply(ctx(t), kv.Meta{DryRun: true}, []kv.Write{{Key: "session.idle_timeout", Text: text("5h")}}); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("a dry run from a stale view passed a rule that fails: %v", err)
	}
}

// A schema change and a rollback of everything compare one key (the last-change key),
// not every value: they work at any number of values.
func TestWholeNamespaceChangesAtScale(t *testing.T) {
	s, c := newStore(t)
	const n = 5_000 // above the test member's --max-txn-ops (4,096)
	keys := putMany(t, s, n)
	wholeNamespaceChanges(t, s, c, keys)
}

// putMany adds n int keys to the schema and gives each a value, in batches.
func putMany(t *testing.T, s *kv.Store, n int) []string {
	t.Helper()
	var doc strings.Builder
	doc.Write(exampleSchema(t))
	keys := make([]string, n)
	doc.WriteString("\n# generated\n")
	var sch strings.Builder
	for i := range keys {
		keys[i] = fmt.Sprintf("gen.k%05d", i)
		fmt.Fprintf(&sch, "  %s: {type: int, max: 1000}\n", keys[i])
	}
	full := strings.Replace(doc.String(), "rules:", sch.String()+"rules:", 1)
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(full)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		var ws []kv.Write
		for _, k := range keys[i:min(i+100, n)] {
			ws = append(ws, kv.Write{Key: k, Value: int64(1)})
		}
		if _, err := s.Apply(ctx(t), kv.Meta{}, ws); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func wholeNamespaceChanges(t *testing.T, s *kv.Store, c *clientv3.Client, keys []string) {
	t.Helper()
	_, raw, _, err := s.Schema(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	base := set(t, s, "log.level", "warn")
	// A schema change checks every value: a tightening that one value breaks
	// is refused, naming it; a widening is applied.
	if _, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: keys[len(keys)-1], Value: int64(900)}}); err != nil {
		t.Fatal(err)
	}
	tight := strings.Replace(string(raw), "{type: int, max: 1000}", "{type: int, max: 500}", -1)
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(tight)); err == nil || !strings.Contains(err.Error(), keys[len(keys)-1]) {
		t.Fatalf("tightening past a stored value: %v", err)
	}
	wide := strings.Replace(string(raw), "{type: int, max: 1000}", "{type: int, max: 2000}", -1)
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(wide)); err != nil {
		t.Fatalf("schema change over %d values: %v", len(keys), err)
	}
	// A rollback of everything reads every value and writes the few that differ.
	if _, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: keys[0], Value: int64(7)}, {Key: "log.level", Text: text("error")}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.RollbackAll(ctx(t), kv.Meta{}, base.Revision)
	if err != nil {
		t.Fatalf("rollback of %d values: %v", len(keys), err)
	}
	if len(r.Changes) != 3 { // keys[0], the last key and log.level
		t.Fatalf("rollback changes: %+v", r.Changes)
	}
	if e, _ := s.Get(ctx(t), keys[0], 0); e.Value != int64(1) {
		t.Fatalf("%s after rollback: %v", keys[0], e.Value)
	}
	// A value changed or deleted between the listing and the commit is
	// caught by the last-change key: the change runs again on the fresh state.
	other := kv.New(c)
	for _, w := range []kv.Write{{Key: keys[1], Value: int64(3)}, {Key: keys[2], Delete: true}} {
		runs := 0
		_, err := s.Update(ctx(t), kv.Meta{Action: kv.ActionApply}, nil, func(tx *kv.Tx) error {
			runs++
			entries, err := tx.List()
			if err != nil {
				return err
			}
			if runs == 1 {
				if _, err := other.Apply(ctx(t), kv.Meta{}, []kv.Write{w}); err != nil {
					t.Fatal(err)
				}
			}
			return tx.Put(kv.Write{Key: "taskqueue.max_workers", Value: int64(len(entries)%200 + 1)})
		})
		if err != nil || runs != 2 {
			t.Fatalf("after a concurrent %+v: %d runs, %v", w, runs, err)
		}
	}
}

func exampleSchema(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile("../examples/schema.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Under racing writers through two stores, no valid write is refused: the
// absolute timeout only grows, so an idle timeout equal to an absolute one
// already acknowledged holds whatever else was written since. A refusal
// resting on a stale view would show as Invalid here.
func TestNoFalseRefusalsUnderRacingWriters(t *testing.T) {
	a, c := newStore(t)
	b := kv.New(c)
	set(t, a, "session.absolute_timeout", "1h")
	set(t, a, "session.idle_timeout", "1h") // a caches absolute = 1h
	var acked atomic.Int64                  // the largest absolute acknowledged, in minutes
	acked.Store(60)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := 70; m <= 600; m += 10 {
			d := time.Duration(m) * time.Minute
			_, err := b.Apply(context.Background(), kv.Meta{}, []kv.Write{{Key: "session.absolute_timeout", Value: d.String()}})
			for cfgerr.CodeOf(err) == cfgerr.Conflict { // lost every retry to the other writer: try again
				_, err = b.Apply(context.Background(), kv.Meta{}, []kv.Write{{Key: "session.absolute_timeout", Value: d.String()}})
			}
			if err != nil {
				t.Error(err)
				return
			}
			acked.Store(int64(m))
		}
	}()
	writes, seen := 0, int64(60)
	for running := true; running; writes++ {
		select {
		case <-done:
			running = false
		default:
		}
		// Write after each change of the other key is acknowledged: a's
		// view of it is then most likely behind.
		for m := acked.Load(); m == seen && running; m = acked.Load() {
			runtime.Gosched()
			select {
			case <-done:
				running = false
			default:
			}
		}
		seen = acked.Load()
		d := time.Duration(seen) * time.Minute
		_, err := a.Apply(context.Background(), kv.Meta{}, []kv.Write{{Key: "session.idle_timeout", Value: d.String()}})
		if err != nil && cfgerr.CodeOf(err) != cfgerr.Conflict {
			t.Fatalf("idle %v, with absolute at least %v acknowledged: %v", d, d, err)
		}
	}
	t.Logf("%d writes raced 54 changes of the other key", writes)
}

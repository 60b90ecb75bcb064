package kv_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/seal"
)

func TestMain(m *testing.M) { etcdtest.VerifyNoLeaks(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// kek is the key-encryption keyring of the tests' stores: stores on one
// etcd stand for the nodes of one cluster, which share it.
var kek = func() *seal.Local {
	ring := seal.NewKEKRing()
	p, _ := seal.NewLocal(ring)
	return p
}()

func newStore(t *testing.T) (*kv.Store, *clientv3.Client) {
	t.Helper()
	_, c := etcdtest.Start(t)
	s := kv.New(c, kv.WithProvider(kek))
	doc, err := os.ReadFile("../examples/schema.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetSchema(ctx(t), kv.Meta{Actor: "test"}, doc); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func set(t *testing.T, s *kv.Store, key, text string) *kv.Result {
	t.Helper()
	r, err := s.Apply(ctx(t), kv.Meta{Actor: "alice", Action: kv.ActionSet, Comment: "c-" + text},
		[]kv.Write{{Key: key, Text: &text}})
	if err != nil {
		t.Fatalf("set %s=%s: %v", key, text, err)
	}
	return r
}

func text(s string) *string { return &s }

func rev(t *testing.T, c *clientv3.Client) int64 {
	r, err := c.Get(ctx(t), "rev-probe")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

func TestSetGetDefaultsAndList(t *testing.T) {
	s, c := newStore(t)
	e, err := s.Get(ctx(t), "session.idle_timeout", 0)
	if err != nil || e.Source != kv.SourceDefault || e.Value != 15*time.Minute {
		t.Fatalf("default: %+v, %v", e, err)
	}
	r := set(t, s, "session.idle_timeout", "20m")
	e, err = s.Get(ctx(t), "session.idle_timeout", 0)
	if err != nil || e.Value != 20*time.Minute || e.Source != kv.SourceCluster || e.Actor != "alice" ||
		e.Comment != "c-20m" || e.Revision != r.Revision {
		t.Fatalf("after set: %+v, %v", e, err)
	}
	if _, err := s.Get(ctx(t), "db.password", 0); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("key without value or default: %v", err)
	}
	if _, err := s.Get(ctx(t), "no.such", 0); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("unknown key: %v", err)
	}
	l, err := s.List(ctx(t), "session.", 0)
	if err != nil || len(l) != 2 || l[0].Key != "session.absolute_timeout" || l[0].Source != kv.SourceDefault ||
		l[1].Source != kv.SourceCluster {
		t.Fatalf("list: %v, %v", l, err)
	}
	// A key with neither a value nor a default is listed as unset.
	if l, err := s.List(ctx(t), "db.", 0); err != nil || len(l) != 1 || l[0].Source != kv.SourceUnset || l[0].Value != nil || l[0].Type != "string" {
		t.Fatalf("list of an unset key: %+v %v", l, err)
	}
	// Deleting falls back to the default.
	if _, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionDelete}, []kv.Write{{Key: "session.idle_timeout", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx(t), "session.idle_timeout", 0); e.Source != kv.SourceDefault {
		t.Fatalf("after delete: %+v", e)
	}
	// Deleting it again is done already: reported, nothing written.
	before := rev(t, c)
	if r, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionDelete}, []kv.Write{{Key: "session.idle_timeout", Delete: true}}); err != nil ||
		r.Revision != 0 || len(r.Changes) != 0 || !slices.Equal(r.Unchanged, []string{"session.idle_timeout"}) {
		t.Fatalf("delete of a key with no value: %+v %v", r, err)
	}
	// In a batch, the no-op delete is reported and the rest is written.
	r2, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "session.idle_timeout", Delete: true}, {Key: "log.level", Text: text("warn")}})
	if err != nil || r2.Revision == 0 || len(r2.Changes) != 1 || r2.Changes[0].Key != "log.level" || !slices.Equal(r2.Unchanged, []string{"session.idle_timeout"}) {
		t.Fatalf("batch with a no-op delete: %+v %v", r2, err)
	}
	if r2.Revision != before+1 {
		t.Fatalf("the no-op delete moved etcd's revision: %d after %d", r2.Revision, before)
	}
	// The value at an old revision.
	if e, err := s.Get(ctx(t), "session.idle_timeout", r.Revision); err != nil || e.Value != 20*time.Minute {
		t.Fatalf("get at revision %d: %+v %v", r.Revision, e, err)
	}
}

// Every kind of bad input gets an error naming the key and the reason, and
// writes nothing: etcd's revision does not move.
func TestBadInputWritesNothing(t *testing.T) {
	s, c := newStore(t)
	r := set(t, s, "taskqueue.max_workers", "8")
	big := strings.Repeat("x", kv.MaxValueBytes+1)
	stale := r.Revision - 1
	cases := []struct {
		name  string
		write kv.Write
		code  cfgerr.Code
		want  string
	}{
		{"wrong type", kv.Write{Key: "taskqueue.max_workers", Value: "many"}, cfgerr.Invalid, "an int is required"},
		{"wrong text", kv.Write{Key: "taskqueue.max_workers", Text: text("many")}, cfgerr.Invalid, "not a whole number"},
		{"out of range", kv.Write{Key: "taskqueue.max_workers", Text: text("1000")}, cfgerr.Invalid, "above the maximum 256"},
		{"enum miss", kv.Write{Key: "log.level", Text: text("verbose")}, cfgerr.Invalid, "not one of [debug, info, warn, error]"},
		{"pattern miss", kv.Write{Key: "alerts.channels", Text: text("email,fax")}, cfgerr.Invalid, "does not match pattern"},
		{"unknown key", kv.Write{Key: "no.such", Text: text("1")}, cfgerr.Invalid, "not in the schema"},
		{"bad key name", kv.Write{Key: "Bad Key!", Text: text("1")}, cfgerr.Invalid, "not allowed"},
		{"broken rule", kv.Write{Key: "session.idle_timeout", Text: text("9h")}, cfgerr.Invalid, "must not exceed the absolute timeout"},
		{"over 1 MiB", kv.Write{Key: "site.banner", Value: big}, cfgerr.Invalid, "longer than max_length"},
		{"expect_revision", kv.Write{Key: "taskqueue.max_workers", Text: text("9"), ExpectRevision: &stale}, cfgerr.FailedPrecondition, "expected revision"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rev(t, c)
			_, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionSet}, []kv.Write{tc.write})
			e := cfgerr.First(err)
			if e == nil || e.Code != tc.code || e.Key != tc.write.Key || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (code %s); want %s naming %q and %q", err, cfgerr.CodeOf(err), tc.code, tc.write.Key, tc.want)
			}
			if after := rev(t, c); after != before {
				t.Fatalf("bad input moved the revision from %d to %d", before, after)
			}
		})
	}
	if e, _ := s.Get(ctx(t), "taskqueue.max_workers", 0); e.Value != int64(8) {
		t.Fatalf("value changed by bad input: %v", e.Value)
	}
}

func TestMaxValueSize(t *testing.T) {
	_, c := etcdtest.Start(t)
	s := kv.New(c)
	if _, err := s.SetSchema(ctx(t), kv.Meta{}, []byte("keys: {blob: {type: string}}")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "blob", Value: strings.Repeat("x", kv.MaxValueBytes)}})
	if e := cfgerr.First(err); e == nil || e.Key != "blob" || !strings.Contains(e.Message, "over the 1048576-byte limit") {
		t.Fatalf("oversize value: %v", err)
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s, c := newStore(t)
	before := rev(t, c)
	_, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionApply}, []kv.Write{
		{Key: "log.level", Text: text("debug")},
		{Key: "taskqueue.max_workers", Text: text("0")},
		{Key: "feature.new_checkout", Value: "yes"},
	})
	all := cfgerr.All(err)
	if len(all) != 2 || all[0].Key != "taskqueue.max_workers" || all[1].Key != "feature.new_checkout" {
		t.Fatalf("want both bad keys named: %v", err)
	}
	if rev(t, c) != before {
		t.Fatal("a failed batch wrote something")
	}
	r, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionApply}, []kv.Write{
		{Key: "session.absolute_timeout", Text: text("12h")},
		{Key: "session.idle_timeout", Text: text("10h")}, // holds only with the other write
	})
	if err != nil || len(r.Changes) != 2 {
		t.Fatalf("batch: %v %v", r, err)
	}
	dry, err := s.Apply(ctx(t), kv.Meta{Action: kv.ActionApply, DryRun: true}, []kv.Write{{Key: "log.level", Text: text("warn")}})
	if err != nil || !dry.DryRun || dry.Revision != 0 || rev(t, c) != r.Revision {
		t.Fatalf("dry run wrote: %v %v", dry, err)
	}
}

// Many writers, through two stores (two nodes), race on two keys joined by a
// rule. After every interleaving the rule holds at every revision, and every
// acknowledged write is in etcd's history at the revision it was
// acknowledged with.
func TestRuleHoldsUnderRacingWriters(t *testing.T) {
	s, c := newStore(t)
	stores := []*kv.Store{s, kv.New(c)}
	type ack struct {
		key string
		val time.Duration
		rev int64
	}
	var (
		mu        sync.Mutex
		acks      []ack
		conflicts int
		wg        sync.WaitGroup
	)
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				// idle in [1h,12h], absolute in [1h,12h]: about half the writes break the rule.
				key := "session.idle_timeout"
				if (w+i)%2 == 0 {
					key = "session.absolute_timeout"
				}
				v := time.Duration(1+(w*7+i*5)%12) * time.Hour
				r, err := stores[w%2].Apply(context.Background(), kv.Meta{Actor: fmt.Sprint("w", w), Action: kv.ActionSet},
					[]kv.Write{{Key: key, Value: v.String()}})
				switch cfgerr.CodeOf(err) {
				case "":
					mu.Lock()
					acks = append(acks, ack{key: key, val: v, rev: r.Revision})
					mu.Unlock()
				case cfgerr.Invalid: // the rule refused it
				case cfgerr.Conflict: // lost every retry: not acknowledged, nothing written
					mu.Lock()
					conflicts++
					mu.Unlock()
				default:
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if len(acks) < 20 || conflicts > len(acks)/4 {
		t.Fatalf("%d writes succeeded, %d gave up on conflicts", len(acks), conflicts)
	}
	t.Logf("%d acknowledged, %d conflicts after all retries", len(acks), conflicts)
	// No acknowledged write is lost: etcd holds it at its revision.
	for _, a := range acks {
		e, err := s.Get(ctx(t), a.key, a.rev)
		if err != nil || e.Value != a.val || e.Revision != a.rev {
			t.Fatalf("write %s=%v at %d: got %+v %v", a.key, a.val, a.rev, e, err)
		}
	}
	// The rule held at every revision: replay the audit trail in order.
	recs, err := s.Audit(ctx(t), kv.AuditQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]time.Duration{"session.idle_timeout": 15 * time.Minute, "session.absolute_timeout": 8 * time.Hour}
	for i := len(recs) - 1; i >= 0; i-- {
		for _, ch := range recs[i].Changes {
			d, _ := time.ParseDuration(ch.New.(string))
			state[ch.Key] = d
		}
		if state["session.idle_timeout"] > state["session.absolute_timeout"] {
			t.Fatalf("rule broken at revision %d: %v", recs[i].Revision, state)
		}
	}
	if got := len(recs) - 1; got != len(acks) { // one record is the schema
		t.Fatalf("%d audit records for %d acknowledged writes", got, len(acks))
	}
}

func TestHistoryDiffRollback(t *testing.T) {
	s, c := newStore(t)
	r1 := set(t, s, "log.level", "debug")
	r2 := set(t, s, "log.level", "warn")
	if _, err := s.Apply(ctx(t), kv.Meta{Actor: "bob", Action: kv.ActionDelete}, []kv.Write{{Key: "log.level", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	r4 := set(t, s, "log.level", "error")

	h, err := s.History(ctx(t), "log.level", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 4 || h[0].Revision != r4.Revision || h[0].Value != "error" || h[0].Source != "etcd" || h[0].Action != kv.ActionSet ||
		!h[1].Deleted || h[1].Actor != "bob" || h[2].Value != "warn" || h[3].Revision != r1.Revision || h[3].Value != "debug" {
		for _, e := range h {
			t.Logf("%+v", *e)
		}
		t.Fatal("history is wrong")
	}

	d, err := s.Diff(ctx(t), "log.level", r1.Revision, r2.Revision)
	if err != nil || !d.Changed || d.From.Value != "debug" || d.To.Value != "warn" {
		t.Fatalf("diff: %+v %v", d, err)
	}

	rb, err := s.Rollback(ctx(t), kv.Meta{Actor: "carol"}, "log.level", r2.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx(t), "log.level", 0); e.Value != "warn" || e.Revision != rb.Revision {
		t.Fatalf("after rollback: %+v", e)
	}
	// Rollback is validated like any write: rolling idle back past the rule fails.
	set(t, s, "session.absolute_timeout", "12h")
	ri := set(t, s, "session.idle_timeout", "10h")
	set(t, s, "session.idle_timeout", "1h")
	set(t, s, "session.absolute_timeout", "2h")
	if _, err := s.Rollback(ctx(t), kv.Meta{}, "session.idle_timeout", ri.Revision); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("rollback breaking a rule: %v", err)
	}

	// Beyond compaction, history and rollback come from the audit trail.
	etcdtest.Compact(t, c)
	h, err = s.History(ctx(t), "log.level", 0)
	if err != nil || len(h) != 5 || h[4].Value != "debug" || h[4].Source != "audit" || h[0].Source != "etcd" {
		t.Fatalf("history after compaction: %v (%d entries)", err, len(h))
	}
	if _, err := s.Rollback(ctx(t), kv.Meta{}, "log.level", r1.Revision); err != nil {
		t.Fatalf("rollback past compaction: %v", err)
	}
	if e, _ := s.Get(ctx(t), "log.level", 0); e.Value != "debug" {
		t.Fatalf("after rollback past compaction: %+v", e)
	}
}

func TestRollbackAll(t *testing.T) {
	s, c := newStore(t)
	set(t, s, "log.level", "debug")
	base := set(t, s, "taskqueue.max_workers", "16")
	set(t, s, "log.level", "error")
	set(t, s, "feature.new_checkout", "true")
	if _, err := s.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "taskqueue.max_workers", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.RollbackAll(ctx(t), kv.Meta{Actor: "ops"}, base.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Changes) != 3 {
		t.Fatalf("changes: %+v", r.Changes)
	}
	now, _ := s.List(ctx(t), "", 0)
	was, _ := s.List(ctx(t), "", base.Revision)
	if len(now) != len(was) {
		t.Fatalf("%d keys now, %d at %d", len(now), len(was), base.Revision)
	}
	for i := range now {
		if now[i].Key != was[i].Key || now[i].Source != was[i].Source || !schema.Equal(now[i].Value, was[i].Value) {
			t.Fatalf("%s: now %v, was %v", now[i].Key, now[i].Value, was[i].Value)
		}
	}
	// A second rollback to the same state has nothing to do: a success
	// that writes nothing.
	before := rev(t, c)
	if r, err := s.RollbackAll(ctx(t), kv.Meta{}, base.Revision); err != nil || r.Revision != 0 || len(r.Changes) != 0 {
		t.Fatalf("second rollback to the same state: %+v %v", r, err)
	}
	if after := rev(t, c); after != before {
		t.Fatalf("nothing to roll back moved etcd's revision from %d to %d", before, after)
	}
	etcdtest.Compact(t, c)
	if _, err := s.RollbackAll(ctx(t), kv.Meta{}, base.Revision); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("rollback to a compacted revision: %v", err)
	}
}

func TestSchemaChangeChecksEveryValue(t *testing.T) {
	s, c := newStore(t)
	set(t, s, "taskqueue.max_workers", "100")
	set(t, s, "site.banner", "hello")
	before := rev(t, c)
	_, err := s.SetSchema(ctx(t), kv.Meta{}, []byte(`
keys:
  taskqueue.max_workers: {type: int, max: 50}
  session.idle_timeout: {type: duration, default: 2h}
  session.absolute_timeout: {type: duration, default: 1h}
rules:
  - {name: idle, expr: session.idle_timeout <= session.absolute_timeout}
`))
	all := cfgerr.All(err)
	if len(all) != 2 || rev(t, c) != before {
		t.Fatalf("want two violations and nothing written: %v", err)
	}
	msgs := err.Error()
	for _, want := range []string{`key "taskqueue.max_workers": value: 100 is above the maximum 50`, `key "site.banner"`} {
		if !strings.Contains(msgs, want) {
			t.Errorf("missing %q in %v", want, msgs)
		}
	}
	// A schema whose defaults break a rule is refused too.
	_, err = s.SetSchema(ctx(t), kv.Meta{}, []byte(`
keys:
  taskqueue.max_workers: {type: int}
  site.banner: {type: string}
  a: {type: int, default: 5}
rules: [{name: small, expr: a < 3}]
`))
	if e := cfgerr.First(err); e == nil || e.Field != "rule small" {
		t.Fatalf("rule over defaults: %v", err)
	}
	sch, _, _, _ := s.Schema(ctx(t))
	if _, ok := sch.Lookup("log.level"); !ok {
		t.Fatal("the old schema should still be active")
	}
}

func TestAuditRecordsEveryChange(t *testing.T) {
	s, _ := newStore(t)
	set(t, s, "log.level", "warn")
	pw := "hunter2"
	if _, err := s.Apply(ctx(t), kv.Meta{Actor: "dba", Action: kv.ActionSet}, []kv.Write{{Key: "db.password", Text: &pw}}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Audit(ctx(t), kv.AuditQuery{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("audit: %d records, %v", len(recs), err)
	}
	if recs[0].Actor != "dba" || recs[0].Changes[0].New != kv.Redacted || !recs[0].Changes[0].Redacted {
		t.Fatalf("sensitive value in audit: %+v", recs[0])
	}
	if recs[1].Changes[0].Key != "log.level" || recs[1].Changes[0].New != "warn" || recs[1].Comment != "c-warn" {
		t.Fatalf("audit record: %+v", recs[1])
	}
	if !recs[2].SchemaChanged || recs[2].Revision >= recs[1].Revision {
		t.Fatalf("schema record: %+v", recs[2])
	}
	only, _ := s.Audit(ctx(t), kv.AuditQuery{Key: "log.level"})
	if len(only) != 1 {
		t.Fatalf("audit by key: %d", len(only))
	}
	older, _ := s.Audit(ctx(t), kv.AuditQuery{Before: recs[1].Revision})
	if len(older) != 1 || !older[0].SchemaChanged {
		t.Fatalf("audit before: %+v", older)
	}
}

// Two stores on one etcd stand for two nodes. Each caches what its changes
// read; a change made through the other store must never be missed: the
// commit's compares catch the stale cache and the retry sees the truth.
func TestStaleCacheAcrossNodes(t *testing.T) {
	a, c := newStore(t)
	b := kv.New(c)
	set(t, a, "session.absolute_timeout", "8h")
	set(t, a, "session.idle_timeout", "1h") // a now caches absolute=8h
	set(t, b, "session.absolute_timeout", "2h")
	_, err := a.Apply(ctx(t), kv.Meta{Action: kv.ActionSet}, []kv.Write{{Key: "session.idle_timeout", Text: text("3h")}})
	if e := cfgerr.First(err); e == nil || e.Field != "rule idle-within-absolute" {
		t.Fatalf("a stale cache let a rule break: %v", err)
	}
	// expect_revision sees the other node's write too.
	r := set(t, b, "log.level", "warn")
	stale := r.Revision - 1
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "log.level", Text: text("debug"), ExpectRevision: &r.Revision}}); err != nil {
		t.Fatalf("expect_revision of a write made elsewhere: %v", err)
	}
	if _, err := b.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "log.level", Text: text("error"), ExpectRevision: &stale}}); cfgerr.CodeOf(err) != cfgerr.FailedPrecondition {
		t.Fatalf("stale expect_revision: %v", err)
	}
	// A delete made elsewhere is seen: a's cache still holds the value.
	if _, err := b.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "log.level", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "log.level", Delete: true}}); err != nil || len(r.Unchanged) != 1 {
		t.Fatalf("delete of a value deleted elsewhere: %+v %v", r, err)
	}
	// A schema change made elsewhere is seen.
	if _, err := b.SetSchema(ctx(t), kv.Meta{}, []byte("keys:\n  session.idle_timeout: {type: duration, max: 2h}\n  session.absolute_timeout: {type: duration}\n  taskqueue.max_workers: {type: int}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "log.level", Text: text("warn")}}); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("write to a key the new schema dropped: %v", err)
	}
	if _, err := a.Apply(ctx(t), kv.Meta{}, []kv.Write{{Key: "session.idle_timeout", Text: text("3h")}}); err == nil || !strings.Contains(err.Error(), "above the maximum 2h") {
		t.Fatalf("write against the new schema's range: %v", err)
	}
}

// Nodes starting together each try their --schema: exactly one applies it.
func TestInitSchemaOnce(t *testing.T) {
	_, c := etcdtest.Start(t)
	doc, _ := os.ReadFile("../examples/schema.yaml")
	var applied atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := kv.New(c).InitSchema(context.Background(), kv.Meta{Actor: "node"}, doc)
			if err != nil {
				t.Error(err)
			}
			if ok {
				applied.Add(1)
			}
		}()
	}
	wg.Wait()
	recs, _ := kv.New(c).Audit(ctx(t), kv.AuditQuery{})
	if applied.Load() != 1 || len(recs) != 1 {
		t.Fatalf("applied %d times, %d audit records", applied.Load(), len(recs))
	}
}

package kv_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

const approvalSchema = `keys:
  pay.live:   {type: bool, default: false, approval: required}
  pay.limit:  {type: int, default: 10, approval: required, approvals: 2}
  pay.cap:    {type: int, default: 100}
  pay.secret: {type: string, sensitive: true, approval: required}
  pay.token:  {type: string, sensitive: true}
rules:
  - name: limit-within-cap
    expr: pay.limit <= pay.cap
    message: the limit must not exceed the cap
`

func approvalStore(t *testing.T, opts ...kv.Option) (*kv.Store, *clientv3.Client) {
	t.Helper()
	_, c := newStore(t)
	s := kv.New(c, append([]kv.Option{kv.WithProvider(kek)}, opts...)...)
	if _, err := s.SetSchema(ctx(t), kv.Meta{Actor: "admin"}, []byte(approvalSchema)); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func propose(t *testing.T, s *kv.Store, who, key, text string) *kv.Proposal {
	t.Helper()
	r, err := s.Apply(ctx(t), kv.Meta{Actor: who, Action: kv.ActionSet, Comment: "please"}, []kv.Write{{Key: key, Text: &text}})
	if err != nil || r.Proposal == nil || r.Proposal.State != kv.ProposalPending || len(r.Changes) != 0 {
		t.Fatalf("set %s: %+v %v", key, r, err)
	}
	return r.Proposal
}

func code(t *testing.T, err error, want cfgerr.Code, words string) {
	t.Helper()
	if cfgerr.CodeOf(err) != want || !strings.Contains(err.Error(), words) {
		t.Fatalf("got %v, want %s with %q", err, want, words)
	}
}

// A change of a key that needs approval is a proposal: nothing changes
// until another approver approves it; then it applies, with author and
// approver in its audit record, once.
func TestProposalApproved(t *testing.T) {
	s, c := approvalStore(t)
	before := rev(t, c)
	p := propose(t, s, "alice", "pay.live", "true")
	if e, _ := s.Get(ctx(t), "pay.live", 0); e.Value != false || e.Source != kv.SourceDefault {
		t.Fatalf("a proposal changed the value: %+v", e)
	}
	if p.Needs != 1 || p.Base["pay.live"] != 0 || p.Author != "alice" {
		t.Fatalf("proposal: %+v", p)
	}
	_, _, err := s.Approve(ctx(t), kv.Meta{Actor: "alice"}, p.ID)
	code(t, err, cfgerr.Forbidden, "may not approve it")
	done, res, err := s.Approve(ctx(t), kv.Meta{Actor: "bob", Comment: "ok"}, p.ID)
	if err != nil || done.State != kv.ProposalApplied || res.Revision <= before {
		t.Fatalf("approve: %+v %+v %v", done, res, err)
	}
	if e, _ := s.Get(ctx(t), "pay.live", 0); e.Value != true || e.Actor != "alice" {
		t.Fatalf("after approval: %+v", e)
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "carol"}, p.ID)
	code(t, err, cfgerr.FailedPrecondition, "is applied")
	recs, _ := s.Audit(ctx(t), kv.AuditQuery{Key: "pay.live"})
	if len(recs) != 2 || recs[0].Action != kv.ActionSet || recs[0].Actor != "alice" || recs[0].Proposal != p.ID ||
		len(recs[0].Approvers) != 1 || recs[0].Approvers[0] != "bob" || recs[1].Action != kv.ActionPropose {
		t.Fatalf("audit: %+v", recs)
	}
	stored, _ := s.Proposal(ctx(t), p.ID)
	if stored.State != kv.ProposalApplied || stored.ModRevision != res.Revision {
		t.Fatalf("the stored proposal: %+v (applied at %d)", stored, res.Revision)
	}
}

// approvals: 2 needs two distinct approvers, never the author, never one
// twice; the change is re-validated when it applies.
func TestProposalNeedsDistinctApprovers(t *testing.T) {
	s, _ := approvalStore(t)
	p := propose(t, s, "alice", "pay.limit", "50")
	mid, res, err := s.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.ID)
	if err != nil || res != nil || mid.State != kv.ProposalPending || len(mid.Approvals) != 1 {
		t.Fatalf("first approval: %+v %v", mid, err)
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.ID)
	code(t, err, cfgerr.FailedPrecondition, "approved proposal")
	if _, _, err := s.Approve(ctx(t), kv.Meta{Actor: "carol"}, p.ID); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx(t), "pay.limit", 0); e.Value != int64(50) {
		t.Fatalf("after two approvals: %v", e.Value)
	}
	// A proposal that the rules refuse is refused at once.
	_, err = s.Apply(ctx(t), kv.Meta{Actor: "alice"}, []kv.Write{{Key: "pay.limit", Text: text("500")}})
	code(t, err, cfgerr.Invalid, "must not exceed the cap")
}

// A proposal rests on what it read: a change of any of it (here the cap
// its rule reads, or the key itself) makes it stale at its last approval,
// and nothing is applied.
func TestProposalGoesStale(t *testing.T) {
	s, _ := approvalStore(t)
	p := propose(t, s, "alice", "pay.limit", "50")
	if _, _, err := s.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.ID); err != nil {
		t.Fatal(err)
	}
	set(t, s, "pay.cap", "60") // the rule read it
	_, _, err := s.Approve(ctx(t), kv.Meta{Actor: "carol"}, p.ID)
	code(t, err, cfgerr.FailedPrecondition, "stale")
	if e, _ := s.Get(ctx(t), "pay.limit", 0); e.Value != int64(10) {
		t.Fatalf("a stale proposal applied: %v", e.Value)
	}
	if got, _ := s.Proposal(ctx(t), p.ID); got.State != kv.ProposalStale {
		t.Fatalf("state: %s", got.State)
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "dave"}, p.ID)
	code(t, err, cfgerr.FailedPrecondition, "is stale")

	// A forced write (break-glass) races a proposal of the same key.
	q := propose(t, s, "alice", "pay.live", "true")
	r, err := s.Apply(ctx(t), kv.Meta{Actor: "root", Force: true, Comment: "incident 42"}, []kv.Write{{Key: "pay.live", Text: text("false")}})
	if err != nil || r.Proposal != nil || r.Revision == 0 {
		t.Fatalf("forced: %+v %v", r, err)
	}
	recs, _ := s.Audit(ctx(t), kv.AuditQuery{Key: "pay.live", Limit: 1})
	if !recs[0].Forced || recs[0].Comment != "incident 42" {
		t.Fatalf("forced record: %+v", recs[0])
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "bob"}, q.ID)
	code(t, err, cfgerr.FailedPrecondition, "stale")
}

func TestProposalWithdrawRejectExpire(t *testing.T) {
	s, c := approvalStore(t)
	p := propose(t, s, "alice", "pay.live", "true")
	_, err := s.Withdraw(ctx(t), kv.Meta{Actor: "bob"}, p.ID)
	code(t, err, cfgerr.Forbidden, "only its author")
	if w, err := s.Withdraw(ctx(t), kv.Meta{Actor: "alice"}, p.ID); err != nil || w.State != kv.ProposalWithdrawn {
		t.Fatalf("withdraw: %+v %v", w, err)
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.ID)
	code(t, err, cfgerr.FailedPrecondition, "is withdrawn")

	q := propose(t, s, "alice", "pay.live", "true")
	_, err = s.Reject(ctx(t), kv.Meta{Actor: "bob"}, q.ID)
	code(t, err, cfgerr.Invalid, "needs a comment")
	if r, err := s.Reject(ctx(t), kv.Meta{Actor: "bob", Comment: "not during the sale"}, q.ID); err != nil || r.State != kv.ProposalRejected || r.Closed.Actor != "bob" {
		t.Fatalf("reject: %+v %v", r, err)
	}
	_, err = s.Reject(ctx(t), kv.Meta{Actor: "carol", Comment: "again"}, q.ID)
	code(t, err, cfgerr.FailedPrecondition, "is rejected")

	short := kv.New(c, kv.WithProvider(kek), kv.WithProposalTTL(time.Nanosecond))
	x := propose(t, short, "alice", "pay.live", "true")
	_, _, err = short.Approve(ctx(t), kv.Meta{Actor: "bob"}, x.ID)
	code(t, err, cfgerr.FailedPrecondition, "is expired")
	if l, _ := s.Proposals(ctx(t), kv.ProposalExpired); len(l) != 1 || l[0].ID != x.ID {
		t.Fatalf("expired proposals: %+v", l)
	}
	if l, _ := s.Proposals(ctx(t), ""); len(l) != 3 {
		t.Fatalf("every proposal: %d", len(l))
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "bob"}, "p-forged")
	code(t, err, cfgerr.NotFound, "no proposal p-forged")
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "bob"}, "../values/x")
	code(t, err, cfgerr.Invalid, "not a proposal id")
	// No-propose refuses, writing nothing.
	before := rev(t, c)
	_, err = s.Apply(ctx(t), kv.Meta{Actor: "alice", NoPropose: true}, []kv.Write{{Key: "pay.live", Text: text("true")}})
	code(t, err, cfgerr.FailedPrecondition, "need(s) 1 approval")
	if rev(t, c) != before {
		t.Fatal("a refused no-propose change wrote")
	}
}

// A proposal of a sensitive key keeps its value sealed; its approval opens
// it and seals the value again.
func TestSealedProposal(t *testing.T) {
	s, c := approvalStore(t)
	p := propose(t, s, "alice", "pay.secret", "sk-live-77f1")
	raw, _ := c.Get(ctx(t), s.Layout().ProposalKey(p.ID))
	if bytes.Contains(raw.Kvs[0].Value, []byte("sk-live-77f1")) || p.Changes[0].Sealed == nil {
		t.Fatalf("the proposal holds the secret in clear: %s", raw.Kvs[0].Value)
	}
	if _, _, err := s.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.ID); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx(t), "pay.secret", 0); e.Value != "sk-live-77f1" {
		t.Fatalf("after approval: %v", e.Value)
	}
}

// Two approvers race for the last approval: the change applies once.
func TestRacingApprovals(t *testing.T) {
	s, c := approvalStore(t)
	other := kv.New(c, kv.WithProvider(kek))
	p := propose(t, s, "alice", "pay.live", "true")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, st := range []*kv.Store{s, other} {
		wg.Go(func() { _, _, errs[i] = st.Approve(ctx(t), kv.Meta{Actor: []string{"bob", "carol"}[i]}, p.ID) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("both or neither applied: %v", errs)
	}
	recs, _ := s.Audit(ctx(t), kv.AuditQuery{Key: "pay.live"})
	applied := 0
	for _, r := range recs {
		if r.Action == kv.ActionSet {
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("applied %d times", applied)
	}
}

// A withdrawal racing the last approval: never both. The approval's commit
// is guarded by the proposal's own revision.
func TestWithdrawRacesApproval(t *testing.T) {
	s, c := approvalStore(t)
	other := kv.New(c, kv.WithProvider(kek))
	both := 0
	for i := range 20 {
		p := propose(t, s, "alice", "pay.live", []string{"true", "false"}[i%2])
		var wg sync.WaitGroup
		var approveErr, withdrawErr error
		wg.Go(func() { _, _, approveErr = other.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.ID) })
		wg.Go(func() { _, withdrawErr = s.Withdraw(ctx(t), kv.Meta{Actor: "alice"}, p.ID) })
		wg.Wait()
		if approveErr == nil && withdrawErr == nil {
			both++
		}
		got, _ := s.Proposal(ctx(t), p.ID)
		if (approveErr == nil) != (got.State == kv.ProposalApplied) {
			t.Fatalf("proposal %s is %s; approval %v, withdrawal %v", p.ID, got.State, approveErr, withdrawErr)
		}
	}
	if both > 0 {
		t.Fatalf("%d of 20 proposals were both applied and withdrawn", both)
	}
}

// With approval: required at its top, a schema change is a proposal too,
// validated again against every value when it applies, and stale if the
// schema changed meanwhile.
func TestSchemaProposal(t *testing.T) {
	s, _ := approvalStore(t)
	guarded := "approval: required\n" + approvalSchema
	if _, err := s.SetSchema(ctx(t), kv.Meta{Actor: "admin"}, []byte(guarded)); err != nil {
		t.Fatal(err) // switching it on is not yet guarded by it
	}
	wider := strings.Replace(guarded, "pay.cap:    {type: int, default: 100}", "pay.cap:    {type: int, default: 100}\n  pay.note:   {type: string}", 1)
	r, err := s.SetSchema(ctx(t), kv.Meta{Actor: "alice"}, []byte(wider))
	if err != nil || r.Proposal == nil || string(r.Proposal.Schema) != wider {
		t.Fatalf("schema change: %+v %v", r, err)
	}
	if sch, _, _, err := s.Schema(ctx(t)); err != nil {
		t.Fatal(err)
	} else if _, ok := sch.Lookup("pay.note"); ok {
		t.Fatal("a proposed schema is in force")
	}
	if _, _, err := s.Approve(ctx(t), kv.Meta{Actor: "bob"}, r.Proposal.ID); err != nil {
		t.Fatal(err)
	}
	sch, _, _, _ := s.Schema(ctx(t))
	if _, ok := sch.Lookup("pay.note"); !ok {
		t.Fatal("the approved schema is not in force")
	}
	// A schema proposal goes stale when the schema changes first.
	p, _ := s.SetSchema(ctx(t), kv.Meta{Actor: "alice"}, []byte(guarded))
	if _, err := s.SetSchema(ctx(t), kv.Meta{Actor: "root", Force: true, Comment: "hotfix"}, []byte(wider+"\n")); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Approve(ctx(t), kv.Meta{Actor: "bob"}, p.Proposal.ID)
	code(t, err, cfgerr.FailedPrecondition, "stale")
}

// A proposal, the decisions on it and a reveal name a key in its audit
// trail without changing it: past compaction the key's value at a revision
// and its history are its changes alone, never a proposed value.
func TestNotesAreNotChanges(t *testing.T) {
	s, c := approvalStore(t)
	force := func(v string) *kv.Result {
		t.Helper()
		r, err := s.Apply(ctx(t), kv.Meta{Actor: "root", Action: kv.ActionSet, Force: true, Comment: "by hand"}, []kv.Write{{Key: "pay.live", Text: &v}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := force("false")
	p := propose(t, s, "alice", "pay.live", "true")
	if _, err := s.Withdraw(ctx(t), kv.Meta{Actor: "alice"}, p.ID); err != nil {
		t.Fatal(err)
	}
	secret := setSecret(t, s, "pay.token", "sk-1")
	if err := s.AuditRead(ctx(t), kv.Meta{Actor: "dana"}, "pay.token", secret.Revision); err != nil {
		t.Fatal(err)
	}
	mid := rev(t, c)
	last := force("true") // later changes: the values at mid are in the audit trail alone once compacted
	setSecret(t, s, "pay.token", "sk-2")
	etcdtest.Compact(t, c)
	if e, err := s.Get(ctx(t), "pay.live", mid); err != nil || e.Value != false || e.Revision != first.Revision {
		t.Fatalf("pay.live at %d, compacted: %+v %v (a proposal is not a value)", mid, e, err)
	}
	if e, err := s.Get(ctx(t), "pay.token", mid); err != nil || e.Value != "sk-1" {
		t.Fatalf("pay.token at %d, compacted, after a reveal: %+v %v", mid, e, err)
	}
	h, err := s.History(ctx(t), "pay.live", 0)
	if err != nil || len(h) != 2 || h[0].Revision != last.Revision || h[1].Revision != first.Revision {
		t.Fatalf("history of pay.live: %+v %v", h, err)
	}
	// The key's audit trail still names them.
	recs, _ := s.Audit(ctx(t), kv.AuditQuery{Key: "pay.live"})
	var actions []string
	for _, rec := range recs {
		actions = append(actions, rec.Action)
	}
	if strings.Join(actions, ",") != "set,withdraw,propose,set" {
		t.Fatalf("audit of pay.live: %v", actions)
	}
}

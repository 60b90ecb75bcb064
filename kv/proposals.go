package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
	"cfgcluster/seal"
)

// Actions of the audit records of proposals (and ProposalStale or
// ProposalExpired for one found so when someone tried to decide it).
const (
	ActionPropose  = "propose"
	ActionApprove  = "approve"
	ActionReject   = "reject"
	ActionWithdraw = "withdraw"
)

// Proposal states. Only a pending proposal may be approved, rejected or
// withdrawn; the others are final.
const (
	ProposalPending   = "pending"
	ProposalApplied   = "applied"
	ProposalRejected  = "rejected"
	ProposalWithdrawn = "withdrawn"
	ProposalStale     = "stale"   // a key it read changed before the last approval
	ProposalExpired   = "expired" // not approved in time
)

// DefaultProposalTTL is how long a proposal waits for its approvals.
const DefaultProposalTTL = 72 * time.Hour

// Proposal is a change to keys that need approval, waiting for it
// (Layout.ProposalKey). It holds what the change read, so the last approval
// applies it only if none of that moved.
type Proposal struct {
	ID      string           `json:"id"`
	State   string           `json:"state"`
	Author  string           `json:"author"`
	Comment string           `json:"comment,omitempty"`
	Action  string           `json:"action"` // the change's: set, delete, apply, rollback
	Created time.Time        `json:"created"`
	Expires time.Time        `json:"expires"`
	Changes []ProposedChange `json:"changes"`
	// Base is the mod revision of every key the change read (0: it had
	// no value), the changed keys and the keys its rules read.
	Base map[string]int64 `json:"base"`
	// Schema is a proposed schema document (the change is then a schema
	// change); SchemaBase is the mod revision of the schema it replaces.
	Schema     []byte `json:"schema,omitempty"`
	SchemaBase int64  `json:"schema_base,omitempty"`

	Needs     int        `json:"needs"` // approvals needed
	Approvals []Decision `json:"approvals,omitempty"`
	// Closed is who ended it (rejected, withdrew, or gave the last
	// approval) and why.
	Closed *Decision `json:"closed,omitempty"`
	// ModRevision is the record's own, for guarded updates; of an applied
	// proposal, it is the applied change's revision (written together).
	ModRevision int64 `json:"-"`
}

// ProposedChange is one key of a proposal: its new value (JSON form), or
// sealed for a sensitive key (Value is then Redacted), or a delete.
type ProposedChange struct {
	Key    string          `json:"key"`
	Value  json.RawMessage `json:"value,omitempty"`
	Sealed *seal.Box       `json:"sealed,omitempty"`
	Delete bool            `json:"delete,omitempty"`
}

// Decision is an approval, a rejection or a withdrawal.
type Decision struct {
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment,omitempty"`
}

// Keys are the keys the proposal changes.
func (p *Proposal) Keys() []string {
	keys := make([]string, len(p.Changes))
	for i, c := range p.Changes {
		keys[i] = c.Key
	}
	return keys
}

// needsApproval is how many approvals the change needs: the most any key it
// writes asks for (0: none).
func (tx *Tx) needsApproval() (int, []string) {
	needs, keys := 0, []string(nil)
	if tx.newSch != nil && tx.loaded.schema.Approval == schema.ApprovalRequired {
		needs, keys = 1, []string{"(the schema)"}
	}
	for _, key := range tx.order {
		if k := tx.writes[key].key; k.NeedsApproval() {
			needs = max(needs, k.ApprovalsNeeded())
			keys = append(keys, key)
		}
	}
	return needs, keys
}

// propose stores the change as a proposal instead of applying it, guarded
// like a commit: what it records as read is what etcd holds.
func (tx *Tx) propose(meta Meta, needs int) (*Result, bool, error) {
	for _, key := range tx.order { // the changed keys are part of what it rests on
		if _, err := tx.read(key); err != nil {
			return nil, false, err
		}
	}
	now := tx.s.now().UTC()
	p := &Proposal{ID: newProposalID(now), State: ProposalPending, Author: meta.Actor, Comment: meta.Comment, Action: meta.Action,
		Created: now, Expires: now.Add(tx.s.proposalTTL), Needs: needs, Base: map[string]int64{}}
	for ek, kv := range tx.reads {
		if key, ok := tx.s.layout.KeyOf(ek); ok {
			p.Base[key] = kv.ModRevision
		}
	}
	if tx.newSch != nil {
		// A schema change is validated again against every value when it
		// applies: it rests on the schema it replaces alone.
		p.Schema, p.SchemaBase, p.Base = tx.doc, tx.loaded.rev, map[string]int64{}
	}
	rec := newAuditRecord(Meta{Actor: meta.Actor, Comment: meta.Comment, Action: ActionPropose}, now)
	rec.Proposal = p.ID
	for _, key := range tx.order {
		w := tx.writes[key]
		c := ProposedChange{Key: key, Delete: w.value == nil}
		ac := Change{Key: key, New: redact(w.key, w.value), Deleted: c.Delete, Redacted: w.key.Sensitive, Note: true}
		if !c.Delete {
			c.Value = w.raw
			if w.key.Sensitive {
				box, err := tx.sealValue(key, w.raw)
				if err != nil {
					return nil, false, err
				}
				c.Value, c.Sealed, ac.NewSealed = json.RawMessage(`"`+Redacted+`"`), box, box
			}
		}
		p.Changes = append(p.Changes, c)
		rec.Changes = append(rec.Changes, ac)
	}
	b, _ := json.Marshal(p)
	ops := append([]clientv3.Op{clientv3.OpPut(tx.s.layout.ProposalKey(p.ID), string(b))}, tx.s.auditOps(rec)...)
	resp, err := tx.guarded(ops)
	if resp == nil || err != nil {
		return nil, false, err
	}
	p.ModRevision = resp.Header.Revision
	return &Result{Revision: resp.Header.Revision, Changes: []Change{}, Proposal: p}, true, nil
}

// applyChecks are a proposal's last approval's checks in the commit: every
// key it read is as it was (else it is stale, once etcd confirms it), and
// its record is guarded, then written as applied in the same transaction.
func (tx *Tx) applyChecks(p *Proposal) (cmps []clientv3.Cmp, ops []clientv3.Op, retry bool, err error) {
	// A retry after a lost commit: decided meanwhile (withdrawn, rejected,
	// applied by a racing approval)?
	now, err := tx.s.Proposal(tx.ctx, p.ID)
	if err != nil {
		return nil, nil, false, err
	}
	if now.ModRevision != p.ModRevision {
		return nil, nil, false, cfgerr.Errorf(cfgerr.Conflict, "", "proposal", "proposal %s was decided meanwhile: it is %s", p.ID, now.State)
	}
	if p.Schema != nil && tx.loaded.rev != p.SchemaBase {
		stale := cfgerr.Errorf(cfgerr.FailedPrecondition, "", "proposal",
			"the schema changed since proposal %s was made (revision %d, now %d): the proposal is stale; propose the schema again", p.ID, p.SchemaBase, tx.loaded.rev)
		if err := tx.confirm(stale); err != nil {
			return nil, nil, false, err
		}
		return nil, nil, true, nil
	}
	for _, key := range slices.Sorted(maps.Keys(p.Base)) {
		kv, err := tx.read(key)
		if err != nil {
			return nil, nil, false, err
		}
		if kv.ModRevision != p.Base[key] {
			stale := cfgerr.Errorf(cfgerr.FailedPrecondition, key, "proposal",
				"changed since proposal %s was made (revision %d, now %d): the proposal is stale; propose the change again", p.ID, p.Base[key], kv.ModRevision)
			if err := tx.confirm(stale); err != nil {
				return nil, nil, false, err
			}
			return nil, nil, true, nil // this node's view was behind: retry
		}
	}
	b, _ := json.Marshal(p)
	pk := tx.s.layout.ProposalKey(p.ID)
	return []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(pk), "=", p.ModRevision)},
		[]clientv3.Op{clientv3.OpPut(pk, string(b))}, false, nil
}

func newProposalID(now time.Time) string {
	return fmt.Sprintf("p-%s-%04x", now.UTC().Format("20060102-150405"), rand.Uint32()&0xffff)
}

// Proposal reads one proposal, through etcd's quorum.
func (s *Store) Proposal(ctx context.Context, id string) (*Proposal, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || len(id) > 64 {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "proposal", "%q is not a proposal id", id)
	}
	resp, err := s.kv.Get(ctx, s.layout.ProposalKey(id))
	if err != nil {
		return nil, EtcdError(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, cfgerr.Errorf(cfgerr.NotFound, "", "proposal", "no proposal %s", id)
	}
	return decodeProposal(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// DecodeProposal decodes a stored proposal (the node's SSE feed reads them
// from its watch).
func DecodeProposal(b []byte, modRev int64) (*Proposal, error) { return decodeProposal(b, modRev) }

func decodeProposal(b []byte, modRev int64) (*Proposal, error) {
	var p Proposal
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "proposal", "a stored proposal is corrupt: %v", err)
	}
	p.ModRevision = modRev
	return &p, nil
}

// Proposals lists proposals, newest first: those in state, or every one
// ("" for all). A pending proposal past its expiry is listed as expired.
func (s *Store) Proposals(ctx context.Context, state string) ([]*Proposal, error) {
	resp, err := s.kv.Get(ctx, s.layout.ProposalsPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(MaxAuditLimit),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return nil, readError(err)
	}
	now := s.now()
	out := []*Proposal{}
	for _, kv := range resp.Kvs {
		p, err := decodeProposal(kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		if p.State == ProposalPending && now.After(p.Expires) {
			p.State = ProposalExpired
		}
		if state == "" || p.State == state {
			out = append(out, p)
		}
	}
	return out, nil
}

// pendingProposal reads a proposal that may still be decided: pending and
// not expired (an expired one is recorded as such).
func (s *Store) pendingProposal(ctx context.Context, meta Meta, id string) (*Proposal, error) {
	p, err := s.Proposal(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.State == ProposalPending && s.now().After(p.Expires) {
		s.closeProposal(ctx, meta, p, ProposalExpired, "")
		p.State = ProposalExpired
	}
	if p.State != ProposalPending {
		return nil, cfgerr.Errorf(cfgerr.FailedPrecondition, "", "proposal", "proposal %s is %s: only a pending proposal can be decided", id, p.State)
	}
	return p, nil
}

// Approve records meta.Actor's approval of a proposal. The last approval it
// needs applies the change, re-validated against the current state and
// schema, in one transaction guarded by every base revision and the
// proposal's own; if a key it read has changed, the proposal becomes stale
// and nothing is applied. The caller checks that the approver may approve
// every key; Approve refuses the author and a second approval by anyone.
func (s *Store) Approve(ctx context.Context, meta Meta, id string) (*Proposal, *Result, error) {
	if err := checkMeta(meta); err != nil {
		return nil, nil, err
	}
	p, err := s.pendingProposal(ctx, meta, id)
	if err != nil {
		return nil, nil, err
	}
	if meta.Actor == p.Author {
		return nil, nil, cfgerr.Errorf(cfgerr.Forbidden, "", "proposal", "%s made proposal %s and may not approve it: another approver must", meta.Actor, id)
	}
	for _, a := range p.Approvals {
		if a.Actor == meta.Actor {
			return nil, nil, cfgerr.Errorf(cfgerr.FailedPrecondition, "", "proposal", "%s approved proposal %s already (%s): approvers must be distinct", meta.Actor, id, a.Time.Format(time.RFC3339))
		}
	}
	now := s.now().UTC()
	next := *p
	next.Approvals = append(slices.Clone(p.Approvals), Decision{Actor: meta.Actor, Time: now, Comment: meta.Comment})
	if len(next.Approvals) < p.Needs {
		return &next, nil, s.putProposal(ctx, Meta{Actor: meta.Actor, Comment: meta.Comment, Action: ActionApprove}, p, &next)
	}
	next.State, next.Closed = ProposalApplied, &next.Approvals[len(next.Approvals)-1]
	writes := make([]Write, len(p.Changes))
	keys := p.Keys()
	for i, c := range p.Changes {
		writes[i] = Write{Key: c.Key, Delete: c.Delete}
		if c.Delete {
			continue
		}
		raw := []byte(c.Value)
		if c.Sealed != nil {
			if raw, err = s.layout.unseal(c.Key, c.Sealed); err != nil {
				return nil, nil, err
			}
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&writes[i].Value); err != nil {
			return nil, nil, cfgerr.Errorf(cfgerr.Internal, c.Key, "proposal", "proposal %s holds a corrupt value: %v", id, err)
		}
	}
	res, err := s.Update(ctx, Meta{Actor: p.Author, Comment: p.Comment, Action: p.Action, proposal: &next}, keys, func(tx *Tx) error {
		if p.Schema != nil {
			return tx.SetSchema(p.Schema)
		}
		var errs []error
		for _, w := range writes {
			errs = append(errs, tx.Put(w))
		}
		return errors.Join(errs...)
	})
	if e := cfgerr.First(err); e != nil && e.Field == "proposal" && e.Code == cfgerr.FailedPrecondition {
		s.closeProposal(ctx, meta, p, ProposalStale, e.Error())
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	next.ModRevision = res.Revision
	return &next, res, nil
}

// Reject ends a pending proposal, unapplied; the caller checks that the
// rejecter may approve every key.
func (s *Store) Reject(ctx context.Context, meta Meta, id string) (*Proposal, error) {
	if strings.TrimSpace(meta.Comment) == "" {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "comment", "a rejection needs a comment saying why")
	}
	p, err := s.pendingProposal(ctx, meta, id)
	if err != nil {
		return nil, err
	}
	return s.decide(ctx, meta, p, ProposalRejected)
}

// Withdraw ends a pending proposal at its author's request.
func (s *Store) Withdraw(ctx context.Context, meta Meta, id string) (*Proposal, error) {
	p, err := s.pendingProposal(ctx, meta, id)
	if err != nil {
		return nil, err
	}
	if meta.Actor != p.Author {
		return nil, cfgerr.Errorf(cfgerr.Forbidden, "", "proposal", "only its author, %s, may withdraw proposal %s (reject it instead)", p.Author, id)
	}
	return s.decide(ctx, meta, p, ProposalWithdrawn)
}

func (s *Store) decide(ctx context.Context, meta Meta, p *Proposal, state string) (*Proposal, error) {
	if err := checkMeta(meta); err != nil {
		return nil, err
	}
	next := *p
	next.State, next.Closed = state, &Decision{Actor: meta.Actor, Time: s.now().UTC(), Comment: meta.Comment}
	action := map[string]string{ProposalRejected: ActionReject, ProposalWithdrawn: ActionWithdraw}[state]
	return &next, s.putProposal(ctx, Meta{Actor: meta.Actor, Comment: meta.Comment, Action: action}, p, &next)
}

// closeProposal records a proposal found stale or expired; best effort (a
// concurrent decision wins, and the state is computed again on reads).
func (s *Store) closeProposal(ctx context.Context, meta Meta, p *Proposal, state, why string) {
	next := *p
	next.State, next.Closed = state, &Decision{Actor: meta.Actor, Time: s.now().UTC(), Comment: why}
	s.putProposal(ctx, Meta{Actor: meta.Actor, Comment: fmt.Sprintf("proposal %s is %s", p.ID, state), Action: state}, p, &next)
}

// putProposal replaces a proposal's record if it is unchanged since read,
// with an audit record of the decision.
func (s *Store) putProposal(ctx context.Context, meta Meta, old, next *Proposal) error {
	b, _ := json.Marshal(next)
	pk := s.layout.ProposalKey(old.ID)
	rec := newAuditRecord(meta, s.now())
	rec.Proposal = old.ID
	for _, c := range old.Changes {
		rec.Changes = append(rec.Changes, Change{Key: c.Key, Deleted: c.Delete, Redacted: c.Sealed != nil, Note: true})
	}
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(pk), "=", old.ModRevision)).
		Then(append([]clientv3.Op{clientv3.OpPut(pk, string(b))}, s.auditOps(rec)...)...).Commit()
	if err != nil {
		return EtcdError(err)
	}
	if !resp.Succeeded {
		return cfgerr.Errorf(cfgerr.Conflict, "", "proposal", "proposal %s changed meanwhile (another approver, or its author): read it again", old.ID)
	}
	next.ModRevision = resp.Header.Revision
	return nil
}

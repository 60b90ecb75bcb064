package node

import (
	"encoding/json"
	"net/http"

	"go.uber.org/zap"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

// writeOptions checks what a write asks of keys that need approval: a
// forced change needs admin on every key and a reason.
func writeOptions(r *http.Request, meta *kv.Meta, opt api.WriteOptions, keys ...string) error {
	meta.NoPropose, meta.Force = opt.NoPropose, opt.Force
	if !opt.Force {
		return nil
	}
	if meta.Comment == "" {
		return cfgerr.Errorf(cfgerr.Invalid, "", "comment", "a forced change needs a comment saying why (--reason)")
	}
	return allow(r, auth.Admin, keys...)
}

// answerWrite answers a write: 202 with the proposal when it was proposed.
func (n *Node) answerWrite(w http.ResponseWriter, r *http.Request, res *kv.Result, out api.WriteResult) error {
	if res.Proposal != nil {
		p := n.wireProposal(res.Proposal)
		out.Proposal = &p
		n.log.Info("change proposed", zap.String("proposal", res.Proposal.ID), zap.Strings("keys", res.Proposal.Keys()),
			zap.String("by", actor(r)), zap.Int("needs", res.Proposal.Needs))
		return writeJSON(w, http.StatusAccepted, out)
	}
	if res.Forced {
		out.Forced = true
		n.log.Warn("critical change forced without approval (break-glass)", zap.Int64("revision", res.Revision), zap.String("by", actor(r)))
	}
	return writeJSON(w, http.StatusOK, out)
}

// wireProposal is a proposal as the API shows it, with the current value of
// each key for the diff (sensitive ones redacted).
func (n *Node) wireProposal(p *kv.Proposal) api.Proposal {
	sch := n.watch.Schema()
	out := api.Proposal{ID: p.ID, State: p.State, Author: p.Author, Comment: p.Comment, Action: p.Action, Created: p.Created,
		Expires: p.Expires, Needs: p.Needs, Changes: []api.ProposedChange{}}
	if p.State == kv.ProposalApplied {
		out.Revision = p.ModRevision
	}
	out.Schema = string(p.Schema)
	for _, a := range p.Approvals {
		out.Approvals = append(out.Approvals, api.Decision(a))
	}
	if p.Closed != nil {
		d := api.Decision(*p.Closed)
		out.Closed = &d
	}
	for _, c := range p.Changes {
		pc := api.ProposedChange{Key: c.Key, Delete: c.Delete, BaseRevision: p.Base[c.Key], Redacted: c.Sealed != nil || sensitive(sch, c.Key)}
		if !c.Delete {
			var v any
			json.Unmarshal(c.Value, &v)
			pc.Value = v
		}
		if v, err := n.watch.Lookup(c.Key); err == nil {
			pc.Current, pc.CurrentRevision = schema.Encode(v.Value), v.Revision
			if v.Source != "cluster" {
				pc.CurrentRevision = 0
			}
		}
		if pc.Redacted {
			pc.Value, pc.Current = redactedOrNil(pc.Value), redactedOrNil(pc.Current)
		}
		out.Changes = append(out.Changes, pc)
	}
	return out
}

func redactedOrNil(v any) any {
	if v == nil {
		return nil
	}
	return api.Redacted
}

// proposalKeys are the keys a caller needs a right on to see or decide a
// proposal: its keys, or every key ("") for a schema proposal.
func proposalKeys(p *kv.Proposal) []string {
	if p.Schema != nil {
		return []string{""}
	}
	return p.Keys()
}

func (n *Node) listProposals(w http.ResponseWriter, r *http.Request) error {
	ps, err := n.store.Proposals(r.Context(), r.URL.Query().Get("state"))
	if err != nil {
		return err
	}
	out := api.ProposalList{Proposals: []api.Proposal{}}
	for _, p := range ps {
		if allow(r, auth.Read, proposalKeys(p)...) == nil {
			out.Proposals = append(out.Proposals, n.wireProposal(p))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) getProposal(w http.ResponseWriter, r *http.Request) error {
	p, err := n.store.Proposal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := allow(r, auth.Read, proposalKeys(p)...); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n.wireProposal(p))
}

// decide approves, rejects or withdraws a proposal. Approving and rejecting
// need approve on every key of it; withdrawing is its author's.
func (n *Node) decide(w http.ResponseWriter, r *http.Request) error {
	var req api.DecisionRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	id, decision := r.PathValue("id"), r.PathValue("decision")
	p, err := n.store.Proposal(r.Context(), id)
	if err != nil {
		return err
	}
	meta := kv.Meta{Actor: actor(r), Comment: req.Comment}
	var out *kv.Proposal
	switch decision {
	case "approve", "reject":
		if err := allow(r, auth.Approve, proposalKeys(p)...); err != nil {
			return err
		}
		if decision == "reject" {
			out, err = n.store.Reject(r.Context(), meta, id)
			break
		}
		var res *kv.Result
		if out, res, err = n.store.Approve(r.Context(), meta, id); err == nil && res != nil {
			n.awaitApplied(r.Context(), res)
			n.log.Info("proposal approved and applied", zap.String("proposal", id), zap.Int64("revision", res.Revision), zap.String("by", actor(r)))
		}
	case "withdraw":
		out, err = n.store.Withdraw(r.Context(), meta, id)
	default:
		return cfgerr.Errorf(cfgerr.NotFound, "", "decision", "no decision %q: approve, reject or withdraw", decision)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n.wireProposal(out))
}

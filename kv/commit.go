package kv

import (
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/seal"
)

// commit checks the change and writes it. ok is false when a concurrent
// change won and the caller should retry.
func (tx *Tx) commit(meta Meta) (res *Result, ok bool, err error) {
	if len(tx.order) == 0 && tx.newSch == nil {
		if !tx.noop {
			return nil, false, cfgerr.Errorf(cfgerr.Invalid, "", "changes", "the change writes nothing")
		}
		// Nothing to write: true only if what the change read still holds.
		if current, err := tx.current(); err != nil || !current {
			return nil, false, err
		}
		return &Result{Changes: []Change{}, Unchanged: tx.unchanged, DryRun: meta.DryRun}, true, nil
	}
	if err := tx.check(); err != nil {
		if err = tx.confirm(err); err != nil {
			reason := "rule"
			if tx.newSch != nil {
				reason = "schema"
			}
			tx.s.countInvalid(err, reason)
		}
		return nil, false, err
	}
	needs, critical := tx.needsApproval()
	var extraCmps []clientv3.Cmp
	var extraOps []clientv3.Op
	switch {
	case meta.proposal != nil:
		// The last approval of a proposal (whether or not today's schema
		// still asks for one): applied only on what it read.
		cmps, ops, retry, err := tx.applyChecks(meta.proposal)
		if err != nil || retry {
			return nil, false, err
		}
		extraCmps, extraOps = cmps, ops
	case needs == 0 || meta.DryRun:
	case meta.Force:
		tx.s.log.Warn("a change of keys that need approval applied without it (break-glass)",
			zap.Strings("keys", critical), zap.String("by", meta.Actor), zap.String("reason", meta.Comment))
	case tx.listed && tx.newSch == nil:
		return nil, false, cfgerr.Errorf(cfgerr.FailedPrecondition, critical[0], "approval",
			"the change would change keys that need approval (%s): change them on their own, to be proposed", strings.Join(critical, ", "))
	case meta.NoPropose:
		return nil, false, cfgerr.Errorf(cfgerr.FailedPrecondition, critical[0], "approval",
			"%s need(s) %d approval(s): the change was not proposed (no-propose)", strings.Join(critical, ", "), needs)
	default:
		return tx.propose(meta, needs)
	}
	now := tx.s.now()
	rec := newAuditRecord(meta, now)
	rec.Forced = meta.Force && needs > 0
	if p := meta.proposal; p != nil {
		rec.Proposal = p.ID
		for _, a := range p.Approvals {
			rec.Approvers = append(rec.Approvers, a.Actor)
		}
	}
	var ops []clientv3.Op
	for _, key := range tx.order {
		p := tx.writes[key]
		ek := tx.s.layout.ValueKey(key)
		old, err := tx.read(key)
		if err != nil {
			return nil, false, err
		}
		c := Change{Key: key, New: redact(p.key, p.value), Deleted: p.value == nil, Redacted: p.key.Sensitive}
		switch {
		case old.ModRevision == 0:
		case p.key.Sensitive:
			// Redacted: the record keeps the old value as it is stored.
			c.Old, c.OldRevision, c.OldSealed = Redacted, old.ModRevision, sealedBox(old)
		default:
			prev, err := tx.s.layout.decodeEntry(tx.loaded.schema, key, old)
			if err != nil {
				return nil, false, err
			}
			c.Old, c.OldRevision = redact(p.key, prev.Value), old.ModRevision
		}
		var box *seal.Box
		if p.key.Sensitive && p.value != nil && !meta.DryRun {
			if box, err = tx.sealValue(key, p.raw); err != nil {
				return nil, false, err
			}
			c.NewSealed = box // the audit trail keeps it sealed, as the value is
		}
		rec.Changes = append(rec.Changes, c)
		if p.value == nil {
			ops = append(ops, clientv3.OpDelete(ek))
			continue
		}
		ops = append(ops, clientv3.OpPut(ek, string(encodeEnvelope(p.key, p.raw, box, meta.Actor, meta.Comment, now))))
	}
	if tx.newSch != nil {
		rec.SchemaChanged, rec.SchemaRevision = true, tx.loaded.rev
		ops = append(ops, clientv3.OpPut(tx.s.layout.SchemaKey(), string(tx.doc)))
	}
	if meta.DryRun {
		// A dry run answers from what etcd confirms, as a change would.
		if current, err := tx.current(); err != nil || !current {
			return nil, false, err
		}
		return &Result{Changes: rec.Changes, Unchanged: tx.unchanged, DryRun: true}, true, nil
	}
	ops = append(ops, tx.s.auditOps(rec)...)

	if len(tx.order) > 0 {
		ops = append(ops, clientv3.OpPut(tx.s.layout.LastChangeKey(), encodeChangeMeta(meta, now)))
	}
	resp, err := tx.guarded(append(ops, extraOps...), extraCmps...)
	if resp == nil || err != nil {
		return nil, false, err
	}
	rev := resp.Header.Revision
	for i, key := range tx.order {
		ek := tx.s.layout.ValueKey(key)
		kv := &mvccpb.KeyValue{Key: []byte(ek)}
		if put := ops[i].ValueBytes(); put != nil && !ops[i].IsDelete() {
			kv = &mvccpb.KeyValue{Key: []byte(ek), Value: put, ModRevision: rev, CreateRevision: rev, Version: 1}
			if old := tx.reads[ek]; old != nil && old.ModRevision != 0 {
				kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
			}
		}
		tx.s.remember(ek, []*mvccpb.KeyValue{kv}, rev)
	}
	if tx.newSch != nil {
		tx.s.loadSchema([]*mvccpb.KeyValue{{ModRevision: rev, Value: tx.doc}})
	}
	return &Result{Revision: rev, Changes: rec.Changes, Unchanged: tx.unchanged, Forced: rec.Forced}, true, nil
}

// guarded commits ops if every read is still current (and cmps hold);
// else it reads back what changed, in the same round trip, for the retry,
// and returns a nil response.
func (tx *Tx) guarded(ops []clientv3.Op, cmps ...clientv3.Cmp) (*clientv3.TxnResponse, error) {
	guards, elses, keys := tx.guards()
	resp, err := tx.s.kv.Txn(tx.ctx).If(append(guards, cmps...)...).Then(ops...).Else(elses...).Commit()
	if err != nil {
		tx.s.forget(keys)
		return nil, EtcdError(err)
	}
	if !resp.Succeeded {
		if tx.sealed {
			tx.s.keys.refresh(tx.ctx, resp.Responses)
		}
		return nil, tx.refresh(resp, keys)
	}
	return resp, nil
}

// guards are the commit's compares (every read, the listing and the schema
// still as the transaction saw them) and the reads its Else branch makes
// for a retry; keys are the etcd keys read one by one, in the order of the
// Else reads after the schema's.
func (tx *Tx) guards() (cmps []clientv3.Cmp, elses []clientv3.Op, keys []string) {
	l := tx.s.layout
	cmps = []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(l.SchemaKey()), "=", tx.loaded.rev)}
	elses = []clientv3.Op{clientv3.OpGet(l.SchemaKey())}
	keys = make([]string, 0, len(tx.reads))
	for k := range tx.reads {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", tx.reads[k].ModRevision))
		elses = append(elses, clientv3.OpGet(k))
	}
	if tx.listed {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.LastChangeKey()), "=", tx.listGen))
	}
	if tx.sealed {
		// Sealed with the newest keys: no data key made or retired since.
		cmps = append(cmps, tx.s.keys.unchanged(tx.keysVersion))
		elses = append(elses, tx.s.keys.reads()...)
	}
	return cmps, elses, keys
}

// refresh records what a failed guard's Else branch read back, for the retry.
func (tx *Tx) refresh(resp *clientv3.TxnResponse, keys []string) error {
	if _, err := tx.s.loadSchema(resp.Responses[0].GetResponseRange().Kvs); err != nil {
		return err
	}
	for i, k := range keys {
		tx.s.remember(k, resp.Responses[i+1].GetResponseRange().Kvs, resp.Header.Revision)
	}
	return nil
}

// current asks etcd, in one linearizable compare-only transaction, whether
// everything the transaction read is still as it read it; if not, the Else
// branch brings the fresh state back for the retry.
func (tx *Tx) current() (bool, error) {
	cmps, elses, keys := tx.guards()
	resp, err := tx.s.kv.Txn(tx.ctx).If(cmps...).Else(elses...).Commit()
	if err != nil {
		return false, EtcdError(err)
	}
	if resp.Succeeded {
		return true, nil
	}
	return false, tx.refresh(resp, keys)
}

// confirm returns a refusal only once etcd has confirmed what it rests on:
// reads come from the store's seen cache and from serializable reads of the
// nearest member, either of which may lag. It returns nil when the
// transaction's view was stale (the caller retries with the fresh state),
// and err, or the error of the confirmation itself, otherwise.
func (tx *Tx) confirm(err error) error {
	switch cfgerr.CodeOf(err) {
	case cfgerr.Invalid, cfgerr.FailedPrecondition, cfgerr.NotFound:
	default:
		return err
	}
	current, cerr := tx.current()
	if cerr != nil {
		return cerr
	}
	if !current {
		return nil
	}
	return err
}

// forget drops keys from the seen cache, after a commit whose outcome is unknown.
func (s *Store) forget(keys []string) {
	s.mu.Lock()
	for _, k := range keys {
		delete(s.seen, k)
	}
	s.mu.Unlock()
}

package kv

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
	"cfgcluster/seal"
)

// Actions recorded in the audit trail.
const (
	ActionSet      = "set"
	ActionDelete   = "delete"
	ActionApply    = "apply"
	ActionRollback = "rollback"
	ActionSchema   = "schema"
	ActionAuth     = "auth"   // a token or role created, changed or revoked
	ActionReveal   = "reveal" // a sensitive value read in clear
)

// Redacted stands in for a sensitive value in audit records and API output.
const Redacted = "<redacted>"

// Limits of the audit trail's size and of what one read of it returns.
const (
	// InlineValueBytes: a record keeps a change's old and new values
	// inline up to this size (JSON); a larger new value is kept once, in
	// the key's index entry, and a larger old one is not kept again (the
	// key's previous entry has it).
	InlineValueBytes = 1024
	// MaxActorBytes and MaxCommentBytes bound who and why: both are stored
	// in every record and index entry.
	MaxActorBytes   = 256
	MaxCommentBytes = 4096
	// MaxAuditLimit is the most records or history entries one read returns.
	MaxAuditLimit = 1000
	// maxReadBytes: a read of the trail stops once it holds this much
	// (after at least one record), so no read grows with the trail.
	maxReadBytes = 8 << 20
	// auditPage is how many records or entries one etcd range returns.
	auditPage = 32
)

// AuditRecord is one change, written in the change's own transaction.
type AuditRecord struct {
	ID       string    `json:"id"`
	Revision int64     `json:"revision"` // the change's revision (the record's mod revision)
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Comment  string    `json:"comment,omitempty"`
	Changes  []Change  `json:"changes,omitempty"`
	// SchemaRevision is the revision of the schema replaced, for schema changes.
	SchemaChanged  bool  `json:"schema_changed,omitempty"`
	SchemaRevision int64 `json:"schema_revision,omitempty"`
	// Proposal is the proposal the record is about, or whose last approval
	// applied the change; Approvers approved it (Actor is its author).
	Proposal  string   `json:"proposal,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	// Forced marks a change of keys that need approval applied without it
	// (break-glass); Comment says why.
	Forced bool `json:"forced,omitempty"`
}

// Change is one key's part of a change. Old and New are JSON forms of the
// values (schema.Encode); a sensitive key's are Redacted. In a stored
// record a value over InlineValueBytes is left out (OldOmitted,
// NewOmitted): the key's history has it.
type Change struct {
	Key         string `json:"key"`
	Old         any    `json:"old,omitempty"`
	New         any    `json:"new,omitempty"`
	OldRevision int64  `json:"old_revision,omitempty"` // 0: the key had no value
	Deleted     bool   `json:"deleted,omitempty"`      // the change removed the value
	Redacted    bool   `json:"redacted,omitempty"`
	OldOmitted  bool   `json:"old_omitted,omitempty"`
	NewOmitted  bool   `json:"new_omitted,omitempty"`
	// A sensitive key's values, sealed as its envelope holds them: its
	// history, diff and rollback work past compaction for whoever holds
	// the key. Omitted in a stored record when large, as values are.
	OldSealed *seal.Box `json:"old_sealed,omitempty"`
	NewSealed *seal.Box `json:"new_sealed,omitempty"`
	// Note marks a record that names the key without changing its value (a
	// proposal, a decision on one, a reveal): it is in the key's audit
	// trail, never in its history, and never read as its value.
	Note bool `json:"note,omitempty"`
}

// keyEntry is the audit trail's index entry of one key's change: the key's
// history reads these alone. Its mod revision is the change's revision.
type keyEntry struct {
	ID          string    `json:"id"` // the record's
	Time        time.Time `json:"time"`
	Actor       string    `json:"actor"`
	Action      string    `json:"action"`
	Comment     string    `json:"comment,omitempty"`
	New         any       `json:"new,omitempty"` // the whole new value (Redacted for a sensitive key)
	OldRevision int64     `json:"old_revision,omitempty"`
	Deleted     bool      `json:"deleted,omitempty"`
	Redacted    bool      `json:"redacted,omitempty"`
	Sealed      *seal.Box `json:"sealed,omitempty"` // a sensitive key's new value, sealed
	Note        bool      `json:"note,omitempty"`   // not a change of the value (Change.Note)
}

// AboutSchema reports whether the record is about the schema itself: a
// schema change, or a proposal of one and the decisions on it (records that
// name no key).
func (r *AuditRecord) AboutSchema() bool {
	return r.SchemaChanged || r.Proposal != "" && len(r.Changes) == 0
}

// Touches reports whether the record changes key.
func (r *AuditRecord) Touches(key string) (*Change, bool) {
	for i := range r.Changes {
		if r.Changes[i].Key == key {
			return &r.Changes[i], true
		}
	}
	return nil, false
}

func redact(k *schema.Key, v any) any {
	if v == nil {
		return nil
	}
	if k != nil && k.Sensitive {
		return Redacted
	}
	return schema.Encode(v)
}

// checkMeta bounds what every record and index entry repeats.
func checkMeta(meta Meta) error {
	if len(meta.Actor) > MaxActorBytes {
		return cfgerr.Errorf(cfgerr.Invalid, "", "actor", "%d bytes is longer than the %d-byte limit", len(meta.Actor), MaxActorBytes)
	}
	if len(meta.Comment) > MaxCommentBytes {
		return cfgerr.Errorf(cfgerr.Invalid, "", "comment", "%d bytes is longer than the %d-byte limit", len(meta.Comment), MaxCommentBytes)
	}
	return nil
}

// AuditQuery selects audit records, newest first.
type AuditQuery struct {
	Key string // only records that change this key; "" for all
	// Prefix makes Key a prefix of the changed keys ("maintenance/").
	Prefix bool
	Before int64 // only records before this revision; 0 for all
	Limit  int   // at most this many (at most MaxAuditLimit); 0 for 100
}

// Audit returns audit records, newest first: at most q.Limit, and fewer
// when they add up to more than a read holds (ask again with Before set to
// the last one's revision).
func (s *Store) Audit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, MaxAuditLimit)
	var out []*AuditRecord
	if q.Key == "" {
		err := s.scan(ctx, s.layout.AuditPrefix(), q.Before, func(kv *mvccpb.KeyValue) (bool, error) {
			r, err := s.decodeRecord(kv)
			if err != nil {
				return false, err
			}
			out = append(out, r)
			return len(out) < q.Limit, nil
		})
		return out, err
	}
	// A key's records, through its index entries.
	prefix := s.layout.auditKeyPrefix(q.Key, q.Prefix)
	var ids []string
	seen := map[string]bool{}
	err := s.scan(ctx, prefix, q.Before, func(kv *mvccpb.KeyValue) (bool, error) {
		e, err := decodeKeyEntry(kv)
		if err != nil {
			return false, err
		}
		if !seen[e.ID] { // a record that changes several keys under a prefix
			seen[e.ID] = true
			ids = append(ids, e.ID)
		}
		return len(ids) < q.Limit, nil
	})
	if err != nil {
		return nil, err
	}
	size := 0
	for i := 0; i < len(ids) && size < maxReadBytes; i += auditPage {
		var gets []clientv3.Op
		for _, id := range ids[i:min(i+auditPage, len(ids))] {
			gets = append(gets, clientv3.OpGet(s.layout.AuditPrefix()+id))
		}
		resp, err := s.kv.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return nil, readError(err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				rec, err := s.decodeRecord(kv)
				if err != nil {
					return nil, err
				}
				size += len(kv.Value)
				out = append(out, rec)
			}
		}
	}
	return out, nil
}

func (s *Store) decodeRecord(kv *mvccpb.KeyValue) (*AuditRecord, error) {
	r := &AuditRecord{}
	id := string(kv.Key[len(s.layout.AuditPrefix()):])
	if err := json.Unmarshal(kv.Value, r); err != nil {
		// Never skip: a record hidden from the trail hides a change.
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "audit", "audit record %s (revision %d) cannot be decoded: %v", id, auditRev(kv), err)
	}
	r.ID, r.Revision = id, auditRev(kv)
	return r, nil
}

// auditRev is the revision of an audit record or index entry: the one it
// was made at, its etcd create revision. Records and entries are written
// once, with the change they describe, and rewritten in place only to be
// sealed again with a newer data key (Reencrypt): their mod revision then
// moves, their create revision does not.
func auditRev(kv *mvccpb.KeyValue) int64 { return kv.CreateRevision }

func decodeKeyEntry(kv *mvccpb.KeyValue) (*keyEntry, error) {
	e := &keyEntry{}
	if err := json.Unmarshal(kv.Value, e); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "audit", "audit index entry %s (revision %d) cannot be decoded: %v", kv.Key, auditRev(kv), err)
	}
	return e, nil
}

// scan calls fn on the keys under prefix changed before revision `before`
// (0: all), newest change first, a page at a time, until fn returns false
// or the values read add up to maxReadBytes.
func (s *Store) scan(ctx context.Context, prefix string, before int64, fn func(*mvccpb.KeyValue) (bool, error)) error {
	if s.index != nil {
		if done, err := s.scanIndexed(ctx, prefix, before, fn); done {
			s.metrics.auditRead("index")
			return err
		}
	}
	// etcd reads the whole range to sort it by revision, or to bound it by
	// one, whatever the limit: each page costs the whole range.
	s.metrics.auditRead("etcd")
	size := 0
	for {
		if before == 1 {
			return nil // revision 1 is etcd's first: nothing is older
		}
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(auditPage),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend)}
		if before > 0 {
			opts = append(opts, clientv3.WithMaxCreateRev(before-1))
		}
		resp, err := s.kv.Get(ctx, prefix, opts...)
		if err != nil {
			return readError(err)
		}
		for _, kv := range resp.Kvs {
			more, err := fn(kv)
			if err != nil || !more {
				return err
			}
			if size += len(kv.Value); size >= maxReadBytes {
				return nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		before = auditRev(resp.Kvs[len(resp.Kvs)-1])
	}
}

// scanIndexed is scan through the store's AuditIndex: it picks a page's
// keys from the index and reads just those. It reports false (having
// called fn on nothing) when the index cannot answer: it is not current up
// to the revision the read needs within freshWait.
func (s *Store) scanIndexed(ctx context.Context, prefix string, before int64, fn func(*mvccpb.KeyValue) (bool, error)) (bool, error) {
	need := before - 1
	if before <= 0 {
		// Whatever was committed before this read began: the revision now.
		resp, err := s.kv.Get(ctx, s.layout.LastChangeKey(), clientv3.WithKeysOnly())
		if err != nil {
			return true, readError(err)
		}
		need = resp.Header.Revision
	}
	if !s.index.waitFor(ctx, need) {
		if err := ctx.Err(); err != nil {
			return true, EtcdError(err)
		}
		s.log.Warn("the audit trail's index is behind: reading etcd instead", zap.Int64("revision", need))
		return false, nil
	}
	size := 0
	for {
		keys, revs, ok := s.index.page(prefix, before, auditPage)
		if !ok || len(keys) == 0 {
			return ok, nil
		}
		gets := make([]clientv3.Op, len(keys))
		for i, k := range keys {
			gets[i] = clientv3.OpGet(k)
		}
		resp, err := s.kv.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return true, readError(err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs { // none: deleted since
				more, err := fn(kv)
				if err != nil || !more {
					return true, err
				}
				if size += len(kv.Value); size >= maxReadBytes {
					return true, nil
				}
			}
		}
		before = revs[len(revs)-1]
	}
}

// readError codes an error of a read: an answer too large for the client is
// the node's trouble, not the caller's bad input.
func readError(err error) error {
	if status.Code(err) == codes.ResourceExhausted {
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd's answer was too large to receive: " + err.Error(), Err: err}
	}
	return EtcdError(err)
}

// AuditOp is the put of an audit record, for changes that are not value
// writes (maintenance windows) but are audited in their own transaction
// all the same. The record's revision is the transaction's.
func (s *Store) AuditOp(meta Meta, changes []Change) []clientv3.Op {
	rec := newAuditRecord(meta, s.now())
	rec.Changes = changes
	return s.auditOps(rec)
}

// AuditRead records that meta.Actor read key's sensitive value, the one
// written at revision rev, in clear.
func (s *Store) AuditRead(ctx context.Context, meta Meta, key string, rev int64) error {
	if err := checkMeta(meta); err != nil {
		return err
	}
	meta.Action = ActionReveal
	if meta.Comment == "" {
		meta.Comment = fmt.Sprintf("read the value of revision %d in clear", rev)
	}
	_, err := s.kv.Txn(ctx).Then(s.AuditOp(meta, []Change{{Key: key, OldRevision: rev, Redacted: true, Note: true}})...).Commit()
	return EtcdError(err)
}

func newAuditRecord(meta Meta, now time.Time) AuditRecord {
	return AuditRecord{Time: now.UTC(), Actor: meta.Actor, Action: meta.Action, Comment: meta.Comment}
}

// auditOps are the puts of a change's audit record and of one index entry
// per changed key. rec holds the changes' whole values; the stored record
// keeps only the small ones.
func (s *Store) auditOps(full AuditRecord) []clientv3.Op {
	id := s.layout.newAuditID(full.Time)
	rec := full
	rec.Changes = nil
	ops := make([]clientv3.Op, 0, len(full.Changes)+1)
	for _, c := range full.Changes {
		e := keyEntry{ID: id, Time: rec.Time, Actor: rec.Actor, Action: rec.Action, Comment: rec.Comment,
			New: c.New, OldRevision: c.OldRevision, Deleted: c.Deleted, Redacted: c.Redacted, Sealed: c.NewSealed, Note: c.Note}
		data, _ := json.Marshal(e)
		ops = append(ops, clientv3.OpPut(s.layout.auditKeyEntry(c.Key, id), string(data)))
		if large(c.Old) || c.OldSealed != nil && len(c.OldSealed.Data) > InlineValueBytes {
			c.Old, c.OldSealed, c.OldOmitted = nil, nil, true
		}
		if large(c.New) || c.NewSealed != nil && len(c.NewSealed.Data) > InlineValueBytes {
			c.New, c.NewSealed, c.NewOmitted = nil, nil, true
		}
		rec.Changes = append(rec.Changes, c)
	}
	data, _ := json.Marshal(rec)
	return append(ops, clientv3.OpPut(s.layout.AuditPrefix()+id, string(data)))
}

// large reports whether a value's JSON form is over InlineValueBytes.
func large(v any) bool {
	if v == nil {
		return false
	}
	if s, ok := v.(string); ok {
		return len(s) > InlineValueBytes
	}
	b, _ := json.Marshal(v)
	return len(b) > InlineValueBytes
}

package kv

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

// Actions recorded in the audit trail.
const (
	ActionSet      = "set"
	ActionDelete   = "delete"
	ActionApply    = "apply"
	ActionRollback = "rollback"
	ActionSchema   = "schema"
)

// Redacted stands in for a sensitive value in audit records and API output.
const Redacted = "<redacted>"

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
}

// Change is one key's part of a change. Old and New are JSON forms of the
// values (schema.Encode); a sensitive key's are Redacted.
type Change struct {
	Key         string `json:"key"`
	Old         any    `json:"old,omitempty"`
	New         any    `json:"new,omitempty"`
	OldRevision int64  `json:"old_revision,omitempty"` // 0: the key had no value
	Deleted     bool   `json:"deleted,omitempty"`      // the change removed the value
	Redacted    bool   `json:"redacted,omitempty"`
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

// AuditQuery selects audit records, newest first.
type AuditQuery struct {
	Key    string // only records that change this key; "" for all
	Before int64  // only records before this revision; 0 for all
	Limit  int    // at most this many; 0 for 100
}

// Audit returns audit records, newest first.
func (s *Store) Audit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []*AuditRecord
	err := s.scanAudit(ctx, q.Before, func(r *AuditRecord) bool {
		if _, ok := r.Touches(q.Key); q.Key == "" || ok {
			out = append(out, r)
		}
		return len(out) < q.Limit
	})
	return out, err
}

// scanAudit calls fn on audit records before revision `before` (0: all),
// newest first, a page at a time, until fn returns false.
func (s *Store) scanAudit(ctx context.Context, before int64, fn func(*AuditRecord) bool) error {
	const page = 500
	for {
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(page),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)}
		if before == 1 {
			return nil // revision 1 is etcd's first: nothing is older
		}
		if before > 0 {
			opts = append(opts, clientv3.WithMaxModRev(before-1))
		}
		resp, err := s.kv.Get(ctx, s.layout.AuditPrefix(), opts...)
		if err != nil {
			return EtcdError(err)
		}
		for _, kv := range resp.Kvs {
			r := &AuditRecord{}
			id := string(kv.Key[len(s.layout.AuditPrefix()):])
			if err := json.Unmarshal(kv.Value, r); err != nil {
				// Never skip: a record hidden from the trail hides a change.
				return cfgerr.Errorf(cfgerr.Internal, "", "audit", "audit record %s (revision %d) cannot be decoded: %v", id, kv.ModRevision, err)
			}
			r.ID = id
			r.Revision = kv.ModRevision
			if !fn(r) {
				return nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		before = resp.Kvs[len(resp.Kvs)-1].ModRevision
	}
}

// AuditOp is the put of an audit record, for changes that are not value
// writes (maintenance windows) but are audited in their own transaction
// all the same. The record's revision is the transaction's.
func (s *Store) AuditOp(meta Meta, changes []Change) clientv3.Op {
	now := s.now()
	rec := newAuditRecord(meta, now)
	rec.Changes = changes
	return s.auditPut(rec, now)
}

func newAuditRecord(meta Meta, now time.Time) AuditRecord {
	return AuditRecord{Time: now.UTC(), Actor: meta.Actor, Action: meta.Action, Comment: meta.Comment}
}

// auditPut is the put of an audit record made at now.
func (s *Store) auditPut(rec AuditRecord, now time.Time) clientv3.Op {
	data, _ := json.Marshal(rec)
	return clientv3.OpPut(s.layout.newAuditKey(now), string(data))
}

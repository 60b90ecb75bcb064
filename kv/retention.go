package kv

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Retention says how much of the audit trail to keep: records younger than
// MaxAge, and at most MaxRecords of them (0: no bound of that kind).
type Retention struct {
	MaxAge     time.Duration
	MaxRecords int
}

// DefaultRetention keeps 90 days and at most 100,000 records.
var DefaultRetention = Retention{MaxAge: 90 * 24 * time.Hour, MaxRecords: 100_000}

// PruneAudit deletes the audit records that fall outside the retention,
// oldest first, with their index entries, except each key's newest entry
// before the cut: that entry is the key's state at the cut, so history,
// diff and reads at any revision within the retention stay whole. It
// returns how many records it deleted. Deletions are idempotent: nodes may
// prune concurrently.
func (s *Store) PruneAudit(ctx context.Context, r Retention) (int, error) {
	if r.MaxAge <= 0 && r.MaxRecords <= 0 {
		return 0, nil
	}
	cutoff := time.Time{}
	if r.MaxAge > 0 {
		cutoff = s.now().Add(-r.MaxAge)
	}
	excess := 0
	if r.MaxRecords > 0 {
		resp, err := s.kv.Get(ctx, s.layout.AuditPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return 0, readError(err)
		}
		excess = max(0, int(resp.Count)-r.MaxRecords)
	}
	pruned := 0
	for {
		// The oldest records: record IDs begin with their time, so key
		// order is age order, and etcd reads just a page (sorting by
		// revision would make it read, and sort, the whole trail each
		// time: a soak's nodes spent most of their CPU there).
		resp, err := s.kv.Get(ctx, s.layout.AuditPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(auditPage))
		if err != nil {
			return pruned, readError(err)
		}
		if len(resp.Kvs) == 0 {
			return pruned, nil
		}
		for _, kv := range resp.Kvs {
			rec, err := s.decodeRecord(kv)
			if err != nil {
				return pruned, err
			}
			if pruned >= excess && !rec.Time.Before(cutoff) {
				return pruned, nil
			}
			if err := s.pruneRecord(ctx, rec); err != nil {
				return pruned, err
			}
			pruned++
		}
	}
}

// pruneRecord deletes a record and, of each key it changed, the index
// entries its own entry supersedes: a key keeps exactly one entry older
// than the retention, its newest, until a newer one is pruned in turn.
// Index entries end with their record's ID, so the entries up to this
// record's are a key range, and (records being pruned oldest first) a
// short one: the entry kept last time, and this record's.
func (s *Store) pruneRecord(ctx context.Context, rec *AuditRecord) error {
	ops := []clientv3.Op{clientv3.OpDelete(s.layout.AuditPrefix() + rec.ID)}
	for _, c := range rec.Changes {
		resp, err := s.kv.Get(ctx, s.layout.auditKeyPrefix(c.Key, false), clientv3.WithKeysOnly(),
			clientv3.WithRange(s.layout.auditKeyEntry(c.Key, rec.ID)+"\x00"))
		if err != nil {
			return readError(err)
		}
		for _, kv := range resp.Kvs[:max(0, len(resp.Kvs)-1)] {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 100) // under etcd's default --max-txn-ops (128)
		if _, err := s.kv.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return EtcdError(err)
		}
		ops = ops[n:]
	}
	return nil
}

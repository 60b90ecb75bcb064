package kv

import (
	"context"
	"errors"
	"sort"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

// HistoryEntry is one revision of a key.
type HistoryEntry struct {
	Revision int64
	Value    any  // typed value; nil when Deleted, or when Redacted
	Deleted  bool // the change removed the value
	Redacted bool // sensitive, and known only from the audit trail, which does not keep it
	// Sensitive: the key was sensitive when this value was written, or is now.
	Sensitive bool
	Actor     string
	Time      time.Time
	Action    string
	Comment   string
	Source    string // "etcd": still in etcd's history; "audit": from the audit trail
}

// History returns every known revision of a key, newest first: the versions
// still in etcd's MVCC history, and from the audit trail the deletions,
// older generations and everything beyond compaction. Each value is shown as
// it was stored, typed by its own record: a past value never fails because
// today's schema would refuse it.
func (s *Store) History(ctx context.Context, key string) ([]*HistoryEntry, error) {
	if err := schema.ValidKeyName(key); err != nil {
		return nil, err
	}
	sch, _, _, err := s.Schema(ctx)
	if err != nil {
		return nil, err
	}
	k, _ := sch.Lookup(key)
	sensitive := k != nil && k.Sensitive
	byRev := map[int64]*HistoryEntry{}
	// Walk the current generation back through etcd's history.
	resp, err := s.kv.Get(ctx, s.layout.ValueKey(key))
	if err != nil {
		return nil, EtcdError(err)
	}
	for kv := first(resp.Kvs); kv != nil; {
		e, err := decodeStored(key, kv)
		if err != nil {
			return nil, err
		}
		byRev[e.Revision] = &HistoryEntry{Revision: e.Revision, Value: e.Value, Actor: e.Actor,
			Time: e.Time, Comment: e.Comment, Source: "etcd", Sensitive: e.Sensitive || sensitive}
		if kv.Version == 1 {
			break
		}
		prev, err := s.kv.Get(ctx, s.layout.ValueKey(key), clientv3.WithRev(kv.ModRevision-1))
		if errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
		if err != nil {
			return nil, EtcdError(err)
		}
		kv = first(prev.Kvs)
	}
	// The audit trail adds actions, deletions and what etcd no longer has.
	err = s.scanAudit(ctx, 0, func(r *AuditRecord) bool {
		c, ok := r.Touches(key)
		if !ok {
			return true
		}
		if h, ok := byRev[r.Revision]; ok {
			h.Action = r.Action
			return true
		}
		h := &HistoryEntry{Revision: r.Revision, Deleted: c.Deleted, Redacted: c.Redacted && !c.Deleted,
			Actor: r.Actor, Time: r.Time, Action: r.Action, Comment: r.Comment, Source: "audit",
			Sensitive: c.Redacted || sensitive}
		if !c.Deleted && !c.Redacted {
			h.Value = auditValue(sch, key, c.New)
		}
		byRev[r.Revision] = h
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(byRev) == 0 {
		if _, err := sch.Key(key); err != nil {
			return nil, err
		}
	}
	out := make([]*HistoryEntry, 0, len(byRev))
	for _, h := range byRev {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision > out[j].Revision })
	return out, nil
}

// Diff compares a key's value at two revisions.
type Diff struct {
	Key     string
	From    *Entry // nil: no value (and no default) at that revision
	To      *Entry
	Changed bool
}

// Diff returns the key's values at revisions from and to (0: now).
func (s *Store) Diff(ctx context.Context, key string, from, to int64) (*Diff, error) {
	at := func(rev int64) (*Entry, error) {
		e, err := s.Get(ctx, key, rev)
		if cfgerr.CodeOf(err) == cfgerr.NotFound && cfgerr.First(err).Field == "" {
			return nil, nil // no value at that revision
		}
		return e, err
	}
	a, err := at(from)
	if err != nil {
		return nil, err
	}
	b, err := at(to)
	if err != nil {
		return nil, err
	}
	d := &Diff{Key: key, From: a, To: b}
	switch {
	case a == nil || b == nil:
		d.Changed = a != b
	default:
		d.Changed = a.Source != b.Source || !schema.Equal(a.Value, b.Value)
	}
	return d, nil
}

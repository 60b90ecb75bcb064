package kv

import (
	"context"
	"errors"
	"sort"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
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

// History returns the newest revisions of a key, newest first, at most
// limit (0: 100; at most MaxAuditLimit): the deletions, actions and values
// of the key's audit index entries (past compaction too), and the versions
// still in etcd's MVCC history. Each value is shown as it was stored, typed
// by its own record: a past value never fails because today's schema would
// refuse it. It reads only this key's entries, never the whole trail.
func (s *Store) History(ctx context.Context, key string, limit int) ([]*HistoryEntry, error) {
	if err := schema.ValidKeyName(key); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxAuditLimit)
	sch, _, _, err := s.Schema(ctx)
	if err != nil {
		return nil, err
	}
	k, _ := sch.Lookup(key)
	sensitive := k != nil && k.Sensitive
	byRev := map[int64]*HistoryEntry{}
	err = s.scan(ctx, s.layout.auditKeyPrefix(key, false), 0, func(kv *mvccpb.KeyValue) (bool, error) {
		e, err := decodeKeyEntry(kv)
		if err != nil || e.Note {
			return err == nil, err // a note (a proposal, a reveal) changed no value
		}
		h := &HistoryEntry{Revision: auditRev(kv), Deleted: e.Deleted, Redacted: e.Redacted && !e.Deleted,
			Actor: e.Actor, Time: e.Time, Action: e.Action, Comment: e.Comment, Source: "audit",
			Sensitive: e.Redacted || sensitive}
		if !e.Deleted && !e.Redacted {
			h.Value = auditValue(sch, key, e.New)
		}
		byRev[auditRev(kv)] = h
		return len(byRev) < limit, nil
	})
	if err != nil {
		return nil, err
	}
	// Walk the current generation back through etcd's history: those
	// versions can still be read at their revision.
	resp, err := s.kv.Get(ctx, s.layout.ValueKey(key))
	if err != nil {
		return nil, EtcdError(err)
	}
	for kv, steps, size := first(resp.Kvs), 0, 0; kv != nil && steps < limit && size < maxReadBytes; steps++ {
		size += len(kv.Value)
		e, err := s.layout.decodeStored(key, kv)
		if err != nil {
			return nil, err
		}
		h := byRev[e.Revision]
		if h == nil {
			h = &HistoryEntry{Revision: e.Revision} // written before the trail had an index
			byRev[e.Revision] = h
		}
		h.Value, h.Actor, h.Time, h.Comment, h.Source = e.Value, e.Actor, e.Time, e.Comment, "etcd"
		h.Sensitive = h.Sensitive || e.Sensitive || sensitive
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
	return out[:min(len(out), limit)], nil
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

package kv

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

// Schema returns the active schema, its document as it was applied, and its
// revision (0 and an empty schema when none was ever applied).
func (s *Store) Schema(ctx context.Context) (*schema.Schema, []byte, int64, error) {
	resp, err := s.kv.Get(ctx, s.layout.SchemaKey())
	if err != nil {
		return nil, nil, 0, EtcdError(err)
	}
	l, err := s.loadSchema(resp.Kvs)
	if err != nil {
		return nil, nil, 0, err
	}
	return l.schema, l.doc, l.rev, nil
}

// schemaAt returns the schema in force at rev (0: now). History is read with
// the current schema when the old one is compacted away.
func (s *Store) schemaAt(ctx context.Context, rev int64) (*schema.Schema, error) {
	if rev > 0 {
		resp, err := s.kv.Get(ctx, s.layout.SchemaKey(), clientv3.WithRev(rev))
		if err == nil {
			if kv := first(resp.Kvs); kv != nil {
				if sch, ok := s.past.Get(kv.ModRevision); ok {
					return sch, nil
				}
				if sch, err := schema.Parse(kv.Value); err == nil {
					s.past.Add(kv.ModRevision, sch)
					return sch, nil
				}
			}
		} else if !errors.Is(err, rpctypes.ErrCompacted) {
			return nil, EtcdError(err)
		}
	}
	sch, _, _, err := s.Schema(ctx)
	return sch, err
}

// Get returns a key's value at rev (0: now): the stored entry, or the
// schema default (Source default, Revision 0). A key with neither, or one the
// schema does not know, is NotFound.
func (s *Store) Get(ctx context.Context, key string, rev int64) (*Entry, error) {
	if err := schema.ValidKeyName(key); err != nil {
		return nil, err
	}
	sch, err := s.schemaAt(ctx, rev)
	if err != nil {
		return nil, err
	}
	e, err := s.valueAt(ctx, sch, key, rev)
	if err != nil || e != nil {
		return e, err
	}
	return defaultEntry(sch, key)
}

func defaultEntry(sch *schema.Schema, key string) (*Entry, error) {
	k, err := sch.Key(key)
	if err != nil {
		return nil, err
	}
	v, ok := k.DefaultValue()
	if !ok {
		return nil, cfgerr.Errorf(cfgerr.NotFound, key, "", "the key has no value and no default")
	}
	return &Entry{Key: key, Value: v, Type: k.Type, Source: SourceDefault}, nil
}

// valueAt returns the stored entry at rev (0: now), nil if none. Past
// compaction it answers from the audit trail.
func (s *Store) valueAt(ctx context.Context, sch *schema.Schema, key string, rev int64) (*Entry, error) {
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.kv.Get(ctx, s.layout.ValueKey(key), opts...)
	if errors.Is(err, rpctypes.ErrCompacted) {
		return s.valueFromAudit(ctx, sch, key, rev)
	}
	if err != nil {
		return nil, EtcdError(err)
	}
	if kv := first(resp.Kvs); kv != nil {
		if rev > 0 {
			return s.layout.decodeStored(key, kv) // as it was, whatever today's schema allows
		}
		return s.layout.decodeEntry(sch, key, kv)
	}
	return nil, nil
}

// valueFromAudit finds the key's value at rev from the newest of its audit
// index entries at or before rev that changed it (notes did not).
func (s *Store) valueFromAudit(ctx context.Context, sch *schema.Schema, key string, rev int64) (*Entry, error) {
	var kv *mvccpb.KeyValue
	var e *keyEntry
	err := s.scan(ctx, s.layout.auditKeyPrefix(key, false), rev+1, func(x *mvccpb.KeyValue) (bool, error) {
		entry, err := decodeKeyEntry(x)
		if err != nil {
			return false, err
		}
		if entry.Note {
			return true, nil
		}
		kv, e = x, entry
		return false, nil
	})
	if err != nil || e == nil || e.Deleted {
		return nil, err
	}
	if e.Redacted && e.Sealed == nil {
		return nil, cfgerr.Errorf(cfgerr.NotFound, key, "revision", "revision %d is compacted and the key is sensitive: its value was written before sealed values were kept in the audit trail", rev)
	}
	k, ok := sch.Lookup(key)
	if !ok {
		return nil, cfgerr.Errorf(cfgerr.NotFound, key, "revision", "revision %d is compacted and the key is no longer in the schema", rev)
	}
	v := e.New
	if e.Sealed != nil {
		raw, err := s.layout.unseal(key, e.Sealed)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, cfgerr.Errorf(cfgerr.Internal, key, "", "sealed audit value at revision %d is corrupt: %v", rev, err)
		}
	}
	return &Entry{Key: key, Value: auditValue(sch, key, v), Type: k.Type, Source: SourceCluster, Actor: e.Actor,
		Time: e.Time, Comment: e.Comment, Revision: auditRev(kv), Sensitive: k.Sensitive || e.Redacted}, nil
}

// auditValue types a value from an audit record (its JSON form) by the
// key's type alone, with no constraint checked; if the key's type has
// changed since, the JSON form is returned as it is.
func auditValue(sch *schema.Schema, key string, raw any) any {
	k, ok := sch.Lookup(key)
	if !ok {
		return raw
	}
	if v, err := typeOnly(key, k.Type).Coerce(raw); err == nil {
		return v
	}
	return raw
}

// List returns the value of every key whose name starts with prefix, at rev
// (0: now): stored values, and defaults for schema keys with no value,
// sorted by key.
func (s *Store) List(ctx context.Context, prefix string, rev int64) ([]*Entry, error) {
	sch, err := s.schemaAt(ctx, rev)
	if err != nil {
		return nil, err
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.kv.Get(ctx, s.layout.ValueKey(prefix), opts...)
	if err != nil {
		return nil, EtcdError(err)
	}
	seen := map[string]bool{}
	var out []*Entry
	for _, kv := range resp.Kvs {
		key, _ := s.layout.KeyOf(string(kv.Key))
		e, err := s.layout.decodeEntry(sch, key, kv)
		if rev > 0 {
			e, err = s.layout.decodeStored(key, kv) // as it was, whatever today's schema allows
		}
		if err != nil {
			return nil, err
		}
		seen[key] = true
		out = append(out, e)
	}
	for _, key := range sch.KeyNames() {
		if seen[key] || !strings.HasPrefix(key, prefix) {
			continue
		}
		e, err := defaultEntry(sch, key)
		if err != nil {
			k, _ := sch.Lookup(key)
			e = &Entry{Key: key, Type: k.Type, Source: SourceUnset}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

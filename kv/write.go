package kv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

// Apply writes a batch of keys as one change: all of them or none.
func (s *Store) Apply(ctx context.Context, meta Meta, writes []Write) (*Result, error) {
	keys := make([]string, len(writes))
	for i, w := range writes {
		keys[i] = w.Key
	}
	return s.Update(ctx, meta, keys, func(tx *Tx) error {
		var errs []error
		for _, w := range writes {
			errs = append(errs, tx.Put(w))
		}
		return errors.Join(errs...)
	})
}

// SetSchema validates a schema document and replaces the active schema with
// it, if every stored value fits it and every rule holds. With meta.DryRun it
// only validates.
func (s *Store) SetSchema(ctx context.Context, meta Meta, doc []byte) (*Result, error) {
	meta.Action = ActionSchema
	return s.Update(ctx, meta, nil, func(tx *Tx) error { return tx.SetSchema(doc) })
}

// errSchemaExists stops InitSchema's transaction when a schema is stored.
var errSchemaExists = errors.New("kv: a schema is stored already")

// InitSchema applies doc only if no schema is stored yet (a node's --schema
// at first start: of several nodes starting together, one applies it). It
// reports whether it did.
func (s *Store) InitSchema(ctx context.Context, meta Meta, doc []byte) (bool, error) {
	meta.Action = ActionSchema
	_, err := s.Update(ctx, meta, nil, func(tx *Tx) error {
		if tx.loaded.rev != 0 {
			return errSchemaExists
		}
		return tx.SetSchema(doc)
	})
	if errors.Is(err, errSchemaExists) {
		return false, nil
	}
	return err == nil, err
}

// Rollback writes the value key had at revision to as a new change (a
// delete, if it had none). History is never rewritten.
func (s *Store) Rollback(ctx context.Context, meta Meta, key string, to int64) (*Result, error) {
	if to <= 0 {
		return nil, cfgerr.Errorf(cfgerr.Invalid, key, "to", "a revision to roll back to is required")
	}
	if err := schema.ValidKeyName(key); err != nil {
		return nil, err
	}
	sch, err := s.schemaAt(ctx, to)
	if err != nil {
		return nil, err
	}
	old, err := s.valueAt(ctx, sch, key, to)
	if err != nil {
		return nil, err
	}
	meta.Action = ActionRollback
	if meta.Comment == "" {
		meta.Comment = fmt.Sprintf("rollback to revision %d", to)
	}
	return s.Update(ctx, meta, []string{key}, func(tx *Tx) error {
		if old == nil {
			return tx.Put(Write{Key: key, Delete: true})
		}
		return tx.Put(Write{Key: key, Value: old.Value})
	})
}

// RollbackAll makes every stored value what it was at revision to, as one
// new change: keys that differ are set, keys that had no value are deleted.
// When every value is as it was, it writes nothing and returns a Result
// with no changes. The revision must not be compacted.
func (s *Store) RollbackAll(ctx context.Context, meta Meta, to int64) (*Result, error) {
	if to <= 0 {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "to", "a revision to roll back to is required")
	}
	sch, err := s.schemaAt(ctx, to)
	if err != nil {
		return nil, err
	}
	resp, err := s.kv.Get(ctx, s.layout.ValuesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(to))
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, cfgerr.Errorf(cfgerr.NotFound, "", "to", "revision %d is compacted: roll keys back one at a time from the audit trail", to)
	}
	if err != nil {
		return nil, EtcdError(err)
	}
	old := map[string]*Entry{}
	for _, kv := range resp.Kvs {
		key, _ := s.layout.KeyOf(string(kv.Key))
		if old[key], err = s.layout.decodeEntry(sch, key, kv); err != nil {
			return nil, err
		}
	}
	meta.Action = ActionRollback
	if meta.Comment == "" {
		meta.Comment = fmt.Sprintf("rollback of every key to revision %d", to)
	}
	return s.Update(ctx, meta, nil, func(tx *Tx) error {
		cur, err := tx.List()
		if err != nil {
			return err
		}
		var errs []error
		for _, e := range cur {
			if _, keep := old[e.Key]; !keep {
				errs = append(errs, tx.Put(Write{Key: e.Key, Delete: true}))
			}
		}
		for _, key := range slices.Sorted(maps.Keys(old)) {
			if e, _ := tx.Get(key); e == nil || !schema.Equal(e.Value, old[key].Value) {
				errs = append(errs, tx.Put(Write{Key: key, Value: old[key].Value}))
			}
		}
		tx.noop = true // every value as it was already: nothing to roll back
		return errors.Join(errs...)
	})
}

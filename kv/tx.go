package kv

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/flags"
	"cfgcluster/schema"
)

// Tx is a change in progress: reads see the store at one revision, writes
// are buffered until Update commits them. A Tx is used by one goroutine.
type Tx struct {
	ctx    context.Context
	s      *Store
	loaded *loadedSchema
	reads  map[string]*mvccpb.KeyValue // etcd key → kv as read, guarded one by one; ModRevision 0: absent
	// listing holds what List read (etcd key → kv), guarded as a whole by
	// the last-change key's mod revision as List saw it (listGen).
	listing map[string]*mvccpb.KeyValue
	listed  bool
	listGen int64
	writes  map[string]*pending
	order   []string
	// unchanged are the keys whose write is a no-op (deleting a key that
	// has no value); noop lets the change commit with nothing to write,
	// once etcd confirms what it read.
	unchanged   []string
	noop        bool
	sealed      bool           // the change sealed a value: its commit compares the data keys' version
	keysVersion int64          // that version
	doc         []byte         // a new schema document, if the change sets one
	newSch      *schema.Schema // its parsed form
}

type pending struct {
	key   *schema.Key
	value any             // nil: delete
	raw   json.RawMessage // the encoded value
}

// Schema is the schema the change is checked against (the new one, once
// SetSchema was called).
func (tx *Tx) Schema() *schema.Schema {
	if tx.newSch != nil {
		return tx.newSch
	}
	return tx.loaded.schema
}

// Get returns the key's stored entry as of the transaction's revision, with
// the transaction's own writes applied; nil if the key has no value.
func (tx *Tx) Get(key string) (*Entry, error) {
	if p, ok := tx.writes[key]; ok {
		if p.value == nil {
			return nil, nil
		}
		return &Entry{Key: key, Value: p.value, Type: p.key.Type, Source: SourceCluster}, nil
	}
	kv, err := tx.read(key)
	if err != nil || kv.ModRevision == 0 {
		return nil, err
	}
	return tx.s.layout.decodeEntry(tx.loaded.schema, key, kv)
}

// read returns the key's kv as the transaction sees it (ModRevision 0:
// absent), reading it if the transaction has not yet.
func (tx *Tx) read(key string) (*mvccpb.KeyValue, error) {
	ek := tx.s.layout.ValueKey(key)
	if kv, ok := tx.reads[ek]; ok {
		return kv, nil
	}
	if tx.listed {
		if kv, ok := tx.listing[ek]; ok {
			return kv, nil
		}
		return &mvccpb.KeyValue{Key: []byte(ek)}, nil // List read every stored key: this one has none
	}
	resp, err := tx.s.kv.Get(tx.ctx, ek, clientv3.WithSerializable())
	if err != nil {
		return nil, EtcdError(err)
	}
	kv := tx.s.remember(ek, resp.Kvs, resp.Header.Revision)
	tx.reads[ek] = kv
	return kv, nil
}

// List returns every stored entry, sorted by key (the transaction's own
// writes are not applied). The commit is then guarded against any value
// created, changed or deleted since, by the last-change key alone.
func (tx *Tx) List() ([]*Entry, error) {
	l := tx.s.layout
	resp, err := tx.s.kv.Txn(tx.ctx).Then(
		clientv3.OpGet(l.LastChangeKey(), clientv3.WithSerializable()),
		clientv3.OpGet(l.ValuesPrefix(), clientv3.WithPrefix(), clientv3.WithSerializable()),
	).Commit()
	if err != nil {
		return nil, EtcdError(err)
	}
	tx.listGen = 0
	if g := first(resp.Responses[0].GetResponseRange().Kvs); g != nil {
		tx.listGen = g.ModRevision
	}
	kvs := resp.Responses[1].GetResponseRange().Kvs
	tx.listing = make(map[string]*mvccpb.KeyValue, len(kvs))
	out := make([]*Entry, 0, len(kvs))
	for _, kv := range kvs {
		key, _ := l.KeyOf(string(kv.Key))
		tx.listing[string(kv.Key)] = kv
		e, err := tx.s.layout.decodeEntry(tx.loaded.schema, key, kv)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	clear(tx.reads) // the listing covers every value, and its guard every change to one
	tx.listed = true
	return out, nil
}

// Put buffers a write after checking its key, type and constraints. Rules
// are checked at commit.
func (tx *Tx) Put(w Write) error {
	k, err := tx.Schema().Key(w.Key)
	if err != nil {
		if cfgerr.CodeOf(err) == cfgerr.NotFound {
			return cfgerr.Errorf(cfgerr.Invalid, w.Key, "", "unknown key: it is not in the schema")
		}
		return err
	}
	if w.ExpectRevision != nil {
		if *w.ExpectRevision < 0 {
			return cfgerr.Errorf(cfgerr.Invalid, w.Key, "expect_revision", "%d is not a revision (0: the key must have no value)", *w.ExpectRevision)
		}
		kv, err := tx.read(w.Key)
		if err != nil {
			return err
		}
		if have := kv.ModRevision; have != *w.ExpectRevision {
			return cfgerr.Errorf(cfgerr.FailedPrecondition, w.Key, "expect_revision", "expected revision %d, the key is at revision %d", *w.ExpectRevision, have)
		}
	}
	if _, dup := tx.writes[w.Key]; dup || slices.Contains(tx.unchanged, w.Key) {
		return cfgerr.Errorf(cfgerr.Invalid, w.Key, "", "the key is written twice in one change")
	}
	p := &pending{key: k}
	if w.Delete {
		kv, err := tx.read(w.Key)
		if err != nil {
			return err
		}
		if kv.ModRevision == 0 {
			// Deleting what is not there is done already (as kubectl
			// apply's): reported, not refused. The read stays guarded.
			tx.unchanged = append(tx.unchanged, w.Key)
			tx.noop = true
			return nil
		}
	} else {
		if w.Text != nil {
			p.value, err = k.ParseText(*w.Text)
		} else {
			p.value, err = k.Coerce(w.Value)
		}
		if err != nil {
			return err
		}
		if p.raw, err = encodeValue(k, p.value); err != nil {
			return err
		}
	}
	tx.writes[w.Key] = p
	tx.order = append(tx.order, w.Key)
	return nil
}

// SetSchema replaces the schema. At commit every stored value must fit the
// new schema and every rule must hold, or nothing is written.
func (tx *Tx) SetSchema(doc []byte) error {
	sch, err := schema.Parse(doc)
	if err != nil {
		return err
	}
	tx.doc, tx.newSch = doc, sch
	return nil
}

// value is the key's value after the change: written, stored, or default.
func (tx *Tx) value(key string) (any, bool, error) {
	e, err := tx.Get(key)
	if err != nil {
		return nil, false, err
	}
	if e != nil {
		return e.Value, true, nil
	}
	k, ok := tx.Schema().Lookup(key)
	if !ok {
		return nil, false, nil
	}
	v, ok := k.DefaultValue()
	return v, ok, nil
}

// check validates the state after the change: the written keys' rules, or,
// for a schema change, every stored value and every rule.
func (tx *Tx) check() error {
	sch := tx.Schema()
	rules := sch.RulesFor(tx.order...)
	if tx.newSch != nil {
		entries, err := tx.List()
		if err != nil {
			return err
		}
		var errs []error
		for _, e := range entries {
			if _, gone := tx.writes[e.Key]; gone {
				continue
			}
			k, ok := sch.Lookup(e.Key)
			if !ok {
				errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, e.Key, "", "the key has a value but the new schema drops it; delete the value first"))
				continue
			}
			if _, err := k.Coerce(schema.Encode(e.Value)); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		rules = sch.Rules
	}
	// Read every key the rules read before evaluating: reads are recorded
	// and guarded by the commit.
	vals := map[string]any{}
	for _, r := range rules {
		for _, k := range r.Keys {
			if _, seen := vals[k]; seen {
				continue
			}
			v, ok, err := tx.value(k)
			if err != nil {
				return err
			}
			if ok {
				vals[k] = v
			}
		}
	}
	if err := sch.Check(rules, func(k string) (any, bool) { v, ok := vals[k]; return v, ok }, tx.order...); err != nil {
		return err
	}
	return tx.checkFlags()
}

// checkFlags checks what one flag's value cannot show alone: that its
// $refs name evaluators of the flags' shared part as it is after the
// change, and, when the change writes the shared part, that every flag
// still compiles with it.
func (tx *Tx) checkFlags() error {
	var keys []string
	shared := false
	for _, k := range tx.order {
		if k == schema.FlagsNamespace {
			shared = true
		} else if _, ok := schema.FlagKeyOf(k); ok {
			keys = append(keys, k)
		}
	}
	if !shared && len(keys) == 0 {
		return nil
	}
	sh := &flags.Shared{}
	if e, err := tx.Get(schema.FlagsNamespace); err != nil {
		return err
	} else if e != nil {
		doc, _ := json.Marshal(e.Value)
		sh, _ = flags.ParseShared(doc) // checked when it was written
	}
	if shared {
		entries, err := tx.List()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, ok := schema.FlagKeyOf(e.Key); ok && !slices.Contains(keys, e.Key) {
				keys = append(keys, e.Key)
			}
		}
	}
	evaluators := sh.Evaluators
	if evaluators == nil {
		evaluators = map[string]any{}
	}
	var errs []error
	for _, key := range keys {
		e, err := tx.Get(key)
		if err != nil {
			return err
		}
		if e == nil {
			continue // deleted
		}
		doc, _ := json.Marshal(e.Value)
		fk, _ := schema.FlagKeyOf(key)
		f, err := flags.NewFlag(fk, doc, evaluators)
		if err != nil {
			return err
		}
		errs = append(errs, schema.FlagProblems(key, f.Problems()))
	}
	return errors.Join(errs...)
}

package kv

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/seal"
)

// ActionKeys marks audit records of data keys made (rotation) or retired.
const ActionKeys = "keys"

// DataKey is a data key as etcd stores it (Layout.DataKeyKey): its scope,
// and its secret wrapped by the provider's key-encryption key.
type DataKey struct {
	ID      string       `json:"id"`
	Prefix  string       `json:"prefix"` // the key names it seals; "" for every key
	Created time.Time    `json:"created"`
	Wrapped seal.Wrapped `json:"wrapped"`
}

// dataKeys is a store's table of data keys, read from etcd and unwrapped by
// its provider. Sealing picks the newest key of the longest scope that
// covers the key name; the commit compares the whole table's range, so a
// change never seals with a key that a rotation has replaced, and a failed
// commit brings the fresh table back in its Else branch.
type dataKeys struct {
	provider seal.Provider
	layout   Layout
	kv       clientv3.KV

	mu     sync.Mutex
	loaded bool
	// version is the mod revision of the keys' version key as the table
	// was read (0: none yet): every rotation and retirement puts it, and a
	// sealing commit compares it, one key rather than the whole range.
	version int64
	keys    []*DataKey
	ring    *seal.Keyring // the unwrapped keys
}

// WithProvider gives the store the provider of its key-encryption keys:
// values of sensitive keys are sealed on write and opened on read with data
// keys that it wraps. Without one, a write of a sensitive key is refused.
func WithProvider(p seal.Provider) Option {
	return func(s *Store) { s.keys = &dataKeys{provider: p} }
}

// Opener opens values sealed with the store's data keys (nil without a
// provider): the node's own watch client reads sensitive values with it.
func (s *Store) Opener() seal.Opener {
	if s.keys == nil {
		return nil
	}
	return s.keys
}

// CheckKeys reads the data keys and unwraps each: an error says which one
// the provider cannot unwrap.
func (s *Store) CheckKeys(ctx context.Context) error {
	if s.keys == nil {
		return nil
	}
	s.keys.invalidate()
	_, _, err := s.keys.table(ctx)
	return err
}

// seal seals a value of name with the data key that seals it now (making
// the first, for every name, if there is none), and returns the version of
// the table it chose from.
func (d *dataKeys) seal(ctx context.Context, name string, raw []byte) (*seal.Box, int64, error) {
	for range 3 {
		ring, version, err := d.table(ctx)
		if err != nil {
			return nil, 0, err
		}
		if k, ok := chooseKey(ring, name); ok {
			b, err := ring.Seal(k.ID, name, raw)
			return b, version, err
		}
		if _, err := d.create(ctx, "", version, nil); err != nil && cfgerr.CodeOf(err) != cfgerr.Conflict {
			return nil, 0, err
		}
	}
	return nil, 0, cfgerr.Errorf(cfgerr.Conflict, name, "", "no data key could be made for it; try again")
}

// chooseKey picks the key that seals a value of name: of the keys whose
// scope covers it, the longest scope's newest (the last made).
func chooseKey(ring *seal.Keyring, name string) (seal.Key, bool) {
	var best seal.Key
	found := false
	for _, k := range ring.Keys {
		if !k.Covers(name) {
			continue
		}
		// The table is in the order etcd made the keys: of one scope, a
		// later one is newer, whatever the clocks of the nodes that made them.
		if !found || len(k.Prefix) >= len(best.Prefix) {
			best, found = k, true
		}
	}
	return best, found
}

// table returns the unwrapped keys and the version they were read at,
// reading them from etcd if the table is not held.
func (d *dataKeys) table(ctx context.Context) (*seal.Keyring, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded {
		return d.ring, d.version, nil
	}
	resp, err := d.kv.Txn(ctx).Then(d.reads()...).Commit()
	if err != nil {
		return nil, 0, EtcdError(err)
	}
	if err := d.loadLocked(ctx, resp.Responses); err != nil {
		return nil, 0, err
	}
	return d.ring, d.version, nil
}

// reads read the table: the keys, then the version key.
func (d *dataKeys) reads() []clientv3.Op {
	return []clientv3.Op{clientv3.OpGet(d.layout.DataKeysPrefix(), clientv3.WithPrefix()), clientv3.OpGet(d.layout.DataKeysVersionKey())}
}

// loadLocked replaces the table with what reads() read (the last two
// responses of rs).
func (d *dataKeys) loadLocked(ctx context.Context, rs []*etcdserverpb.ResponseOp) error {
	kvs := slices.Clone(rs[len(rs)-2].GetResponseRange().Kvs)
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	var version int64
	if v := rs[len(rs)-1].GetResponseRange().Kvs; len(v) > 0 {
		version = v[0].ModRevision
	}
	keys := make([]*DataKey, 0, len(kvs))
	secrets := make([]seal.Key, 0, len(kvs))
	for _, kv := range kvs {
		var k DataKey
		if err := json.Unmarshal(kv.Value, &k); err != nil {
			return cfgerr.Errorf(cfgerr.Internal, "", "", "data key record %s is corrupt: %v", kv.Key, err)
		}
		secret, err := d.provider.Unwrap(ctx, k.ID, k.Wrapped)
		if err != nil {
			return cfgerr.Wrap(cfgerr.Sealed, err)
		}
		keys = append(keys, &k)
		secrets = append(secrets, seal.Key{ID: k.ID, Prefix: k.Prefix, Created: k.Created, Secret: secret})
	}
	ring, err := seal.NewKeyring(secrets...)
	if err != nil {
		return cfgerr.Wrap(cfgerr.Internal, err)
	}
	d.keys, d.ring, d.version, d.loaded = keys, ring, version, true
	return nil
}

// refresh loads the table a failed commit's Else branch read back (its
// last responses).
func (d *dataKeys) refresh(ctx context.Context, rs []*etcdserverpb.ResponseOp) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loadLocked(ctx, rs) != nil {
		d.loaded = false
	}
}

func (d *dataKeys) invalidate() {
	d.mu.Lock()
	d.loaded = false
	d.mu.Unlock()
}

// Open implements seal.Opener: a box sealed with a key the table lacks
// (made since, on another node) reads the table again, once.
func (d *dataKeys) Open(name string, b *seal.Box) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ring, _, err := d.table(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := ring.Key(b.Key); !ok {
		d.invalidate()
		if ring, _, err = d.table(ctx); err != nil {
			return nil, err
		}
	}
	return ring.Open(name, b)
}

// create puts a new data key for prefix if the table is still at version
// (so two nodes never both make the first key), with the audit ops of
// audit when given.
func (d *dataKeys) create(ctx context.Context, prefix string, version int64, audit func(*DataKey) []clientv3.Op) (*DataKey, error) {
	k := seal.NewKey("dk", prefix, time.Now())
	w, err := d.provider.Wrap(ctx, k.ID, k.Secret)
	if err != nil {
		return nil, cfgerr.Wrap(cfgerr.Sealed, err)
	}
	rec := &DataKey{ID: k.ID, Prefix: prefix, Created: k.Created, Wrapped: w}
	b, _ := json.Marshal(rec)
	ops := []clientv3.Op{clientv3.OpPut(d.layout.DataKeyKey(k.ID), string(b)), clientv3.OpPut(d.layout.DataKeysVersionKey(), "")}
	if audit != nil {
		ops = append(ops, audit(rec)...)
	}
	resp, err := d.kv.Txn(ctx).If(d.unchanged(version)).Then(ops...).Commit()
	if err != nil {
		return nil, EtcdError(err)
	}
	if !resp.Succeeded {
		return nil, cfgerr.Errorf(cfgerr.Conflict, "", "prefix", "the data keys changed meanwhile; try again")
	}
	d.invalidate()
	return rec, nil
}

// unchanged is true while no data key was made or retired since the table
// was read at version.
func (d *dataKeys) unchanged(version int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(d.layout.DataKeysVersionKey()), "=", version)
}

// sealValue seals a sensitive key's encoded value for its envelope.
func (tx *Tx) sealValue(name string, raw json.RawMessage) (*seal.Box, error) {
	d := tx.s.keys
	if d == nil {
		return nil, cfgerr.Errorf(cfgerr.Sealed, name, "", "the key is sensitive and this store has no encryption keyring to seal it with")
	}
	b, version, err := d.seal(tx.ctx, name, raw)
	if err != nil {
		return nil, err
	}
	if !tx.sealed || version < tx.keysVersion {
		tx.keysVersion = version // the oldest table any value was sealed from: the compare then fails if they differ
	}
	tx.sealed = true
	return b, nil
}

// KeyInfo is a data key as cfgadm keys status shows it: no secret.
type KeyInfo struct {
	ID      string    `json:"id"`
	Prefix  string    `json:"prefix"`
	Created time.Time `json:"created"`
	KEK     string    `json:"kek"`     // the key-encryption key that wraps it
	Primary bool      `json:"primary"` // new values of its scope are sealed with it
	Values  int       `json:"values"`  // values sealed with it now
}

// KeyStatus is every data key with the number of values it seals, and the
// number of values of sensitive keys that are not sealed (written before
// the key became sensitive).
type KeyStatus struct {
	Keys  []KeyInfo `json:"keys"`
	Plain int       `json:"plain"`
}

// Keys reports the data keys and what each seals, from one scan of the
// values at one revision.
func (s *Store) Keys(ctx context.Context) (*KeyStatus, error) {
	if s.keys == nil {
		return nil, errNoKeyring()
	}
	ring, _, err := s.keys.table(ctx)
	if err != nil {
		return nil, err
	}
	s.keys.mu.Lock()
	keys := slices.Clone(s.keys.keys)
	s.keys.mu.Unlock()
	st := &KeyStatus{Keys: []KeyInfo{}}
	count := map[string]int{}
	sch := s.schema.Load().schema
	err = s.scanValues(ctx, func(key string, kv *mvccpb.KeyValue) {
		var env envelope
		if json.Unmarshal(kv.Value, &env) != nil {
			return
		}
		if env.Sealed != nil {
			count[env.Sealed.Key]++
		} else if k, ok := sch.Lookup(key); ok && k.Sensitive {
			st.Plain++
		}
	})
	if err != nil {
		return nil, err
	}
	primary := primaries(ring)
	for _, k := range keys {
		st.Keys = append(st.Keys, KeyInfo{ID: k.ID, Prefix: k.Prefix, Created: k.Created, KEK: k.Wrapped.KEK,
			Primary: primary[k.Prefix] == k.ID, Values: count[k.ID]})
	}
	slices.SortFunc(st.Keys, func(a, b KeyInfo) int {
		return cmp.Or(strings.Compare(a.Prefix, b.Prefix), a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return st, nil
}

// RotateKey makes a new data key for prefix ("" for every key name): new
// values of keys it covers are sealed with it from now on, on every node.
// Values sealed before keep their key until Reencrypt.
func (s *Store) RotateKey(ctx context.Context, meta Meta, prefix string) (*KeyInfo, error) {
	if s.keys == nil {
		return nil, errNoKeyring()
	}
	if err := validScope(prefix); err != nil {
		return nil, err
	}
	if err := checkMeta(meta); err != nil {
		return nil, err
	}
	meta.Action = ActionKeys
	for range s.maxRetries {
		_, rev, err := s.keys.table(ctx)
		if err != nil {
			return nil, err
		}
		rec, err := s.keys.create(ctx, prefix, rev, func(k *DataKey) []clientv3.Op {
			if meta.Comment == "" {
				meta.Comment = fmt.Sprintf("new data key for %s", scopeName(prefix))
			}
			return s.AuditOp(meta, []Change{{Key: "keys/" + k.ID, New: map[string]any{"prefix": k.Prefix, "kek": k.Wrapped.KEK}}})
		})
		if cfgerr.CodeOf(err) == cfgerr.Conflict {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &KeyInfo{ID: rec.ID, Prefix: rec.Prefix, Created: rec.Created, KEK: rec.Wrapped.KEK, Primary: true}, nil
	}
	return nil, cfgerr.Errorf(cfgerr.Conflict, "", "prefix", "the data keys kept changing; try again")
}

// ExportKeys returns the data keys a service needs to open the values under
// prefix, unwrapped, as a keyring: the keys scoped within prefix. It refuses
// when a value under prefix is sealed with a key of a wider scope (a
// service given that key could open values outside its prefix): rotate a
// key for the prefix and reencrypt first. The export is audited: who took
// which keys.
func (s *Store) ExportKeys(ctx context.Context, meta Meta, prefix string) (*seal.Keyring, error) {
	if s.keys == nil {
		return nil, errNoKeyring()
	}
	if err := validScope(prefix); err != nil {
		return nil, err
	}
	ring, _, err := s.keys.table(ctx)
	if err != nil {
		return nil, err
	}
	var out []seal.Key
	for _, k := range ring.Keys {
		if strings.HasPrefix(k.Prefix, prefix) {
			out = append(out, k)
		}
	}
	exported, _ := seal.NewKeyring(out...)
	wider := map[string]int{}
	err = s.scanValues(ctx, func(key string, kv *mvccpb.KeyValue) {
		var env envelope
		if strings.HasPrefix(key, prefix) && json.Unmarshal(kv.Value, &env) == nil && env.Sealed != nil {
			if _, ok := exported.Key(env.Sealed.Key); !ok {
				wider[env.Sealed.Key]++
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if len(wider) > 0 {
		id := slices.Sorted(maps.Keys(wider))[0]
		k, _ := ring.Key(id)
		return nil, cfgerr.Errorf(cfgerr.FailedPrecondition, "", "prefix",
			"%d value(s) under %s are sealed with data key %s, which is for %s: make a key for %s (cfgadm keys rotate --prefix %s) and reencrypt (cfgadm keys reencrypt) first",
			wider[id], scopeName(prefix), id, scopeName(k.Prefix), scopeName(prefix), prefix)
	}
	if len(out) == 0 {
		return nil, cfgerr.Errorf(cfgerr.FailedPrecondition, "", "prefix",
			"no data key is scoped to %s: make one with cfgadm keys rotate --prefix %s", scopeName(prefix), prefix)
	}
	if err := checkMeta(meta); err != nil {
		return nil, err
	}
	meta.Action = ActionKeys
	if meta.Comment == "" {
		meta.Comment = "exported the data keys of " + scopeName(prefix)
	}
	var changes []Change
	for _, k := range out {
		changes = append(changes, Change{Key: "keys/" + k.ID, New: map[string]any{"exported": prefix}})
	}
	if _, err := s.kv.Txn(ctx).Then(s.AuditOp(meta, changes)...).Commit(); err != nil {
		return nil, EtcdError(err)
	}
	return exported, nil
}

// RewrapKeys wraps every data key again with the provider's current
// key-encryption key (after a new one was added to every node's keyring),
// so the old one can then be removed from the keyrings. Each record is
// replaced only if unchanged since read. It returns how many it rewrapped.
func (s *Store) RewrapKeys(ctx context.Context, meta Meta) (int, error) {
	if s.keys == nil {
		return 0, errNoKeyring()
	}
	if err := checkMeta(meta); err != nil {
		return 0, err
	}
	resp, err := s.kv.Get(ctx, s.layout.DataKeysPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, EtcdError(err)
	}
	meta.Action = ActionKeys
	n := 0
	for _, kv := range resp.Kvs {
		var k DataKey
		if err := json.Unmarshal(kv.Value, &k); err != nil {
			return n, cfgerr.Errorf(cfgerr.Internal, "", "", "data key record %s is corrupt: %v", kv.Key, err)
		}
		secret, err := s.keys.provider.Unwrap(ctx, k.ID, k.Wrapped)
		if err != nil {
			return n, cfgerr.Wrap(cfgerr.Sealed, err)
		}
		w, err := s.keys.provider.Wrap(ctx, k.ID, secret)
		if err != nil {
			return n, cfgerr.Wrap(cfgerr.Sealed, err)
		}
		if w.KEK == k.Wrapped.KEK {
			continue // wrapped by the current key-encryption key already
		}
		old := k.Wrapped.KEK
		k.Wrapped = w
		b, _ := json.Marshal(k)
		m := meta
		if m.Comment == "" {
			m.Comment = fmt.Sprintf("data key %s wrapped by %s instead of %s", k.ID, w.KEK, old)
		}
		tr, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(append([]clientv3.Op{clientv3.OpPut(string(kv.Key), string(b)), clientv3.OpPut(s.layout.DataKeysVersionKey(), "")},
				s.AuditOp(m, []Change{{Key: "keys/" + k.ID, Old: map[string]any{"kek": old}, New: map[string]any{"kek": w.KEK}}})...)...).Commit()
		if err != nil {
			return n, EtcdError(err)
		}
		if !tr.Succeeded {
			return n, cfgerr.Errorf(cfgerr.Conflict, "", "key", "data key %s changed meanwhile; run it again", k.ID)
		}
		n++
	}
	s.keys.invalidate()
	return n, nil
}

// RetireKey deletes a data key that nothing uses any more: not the newest
// of its scope (rotate first), and sealing no value, no audit record and no
// proposal (reencrypt first; records sealed with it are kept until pruned).
// What it sealed could never be opened again, so each use is named.
func (s *Store) RetireKey(ctx context.Context, meta Meta, id string) error {
	if s.keys == nil {
		return errNoKeyring()
	}
	if err := checkMeta(meta); err != nil {
		return err
	}
	s.keys.invalidate()
	ring, rev, err := s.keys.table(ctx)
	if err != nil {
		return err
	}
	k, ok := ring.Key(id)
	if !ok {
		return cfgerr.Errorf(cfgerr.NotFound, "", "key", "no data key %s", id)
	}
	if primaries(ring)[k.Prefix] == id {
		return cfgerr.Errorf(cfgerr.FailedPrecondition, "", "key", "data key %s is the newest for %s and seals its new values: rotate first (cfgadm keys rotate --prefix %s)", id, scopeName(k.Prefix), k.Prefix)
	}
	mark := []byte(`"k":"` + id + `"`)
	uses := map[string]int{}
	err = s.scanValues(ctx, func(_ string, kv *mvccpb.KeyValue) {
		if bytes.Contains(kv.Value, mark) {
			uses["value(s)"]++
		}
	})
	if err != nil {
		return err
	}
	for what, prefix := range map[string]string{"audit record(s)": s.layout.prefix + "v1/audit", "proposal(s)": s.layout.ProposalsPrefix()} {
		if err := s.scanRange(ctx, prefix, func(kv *mvccpb.KeyValue) {
			if bytes.Contains(kv.Value, mark) {
				uses[what]++
			}
		}); err != nil {
			return err
		}
	}
	if len(uses) > 0 {
		var parts []string
		for _, what := range slices.Sorted(maps.Keys(uses)) {
			parts = append(parts, fmt.Sprintf("%d %s", uses[what], what))
		}
		return cfgerr.Errorf(cfgerr.FailedPrecondition, "", "key", "data key %s still seals %s: re-seal them (cfgadm keys reencrypt); a proposal's values are kept until it is decided or expires", id, strings.Join(parts, ", "))
	}
	meta.Action = ActionKeys
	if meta.Comment == "" {
		meta.Comment = "retired data key " + id
	}
	resp, err := s.kv.Txn(ctx).If(s.keys.unchanged(rev)).Then(append([]clientv3.Op{clientv3.OpDelete(s.layout.DataKeyKey(id)),
		clientv3.OpPut(s.layout.DataKeysVersionKey(), "")},
		s.AuditOp(meta, []Change{{Key: "keys/" + id, Deleted: true}})...)...).Commit()
	if err != nil {
		return EtcdError(err)
	}
	if !resp.Succeeded {
		return cfgerr.Errorf(cfgerr.Conflict, "", "key", "the data keys changed meanwhile; try again")
	}
	s.keys.invalidate()
	return nil
}

// primaries maps each scope to the id of its primary key, the newest: the
// table is in the order etcd made the keys.
func primaries(ring *seal.Keyring) map[string]string {
	m := map[string]string{}
	for _, k := range ring.Keys {
		m[k.Prefix] = k.ID
	}
	return m
}

// scanRange calls fn with every key under prefix, in pages, at one revision.
func (s *Store) scanRange(ctx context.Context, prefix string, fn func(kv *mvccpb.KeyValue)) error {
	from, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(1000)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.kv.Get(ctx, from, opts...)
		if err != nil {
			return readError(err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			fn(kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// reencryptBatch and reencryptBytes bound one re-sealing transaction: 40
// values, with their compares, audit index entries and record, stay well
// within etcd's default limit of 128 operations per transaction, and 256
// KiB of envelopes (each value is written twice, envelope and index entry,
// base64 in both) within its default 1.5 MiB request. A larger value goes
// alone.
const (
	reencryptBatch = 40
	reencryptBytes = 256 << 10
)

// batchLen is how many of kvs the next re-sealing transaction takes.
func batchLen(kvs []*mvccpb.KeyValue) int {
	n, size := 0, 0
	for n < len(kvs) && n < reencryptBatch && (n == 0 || size+len(kvs[n].Value) <= reencryptBytes) {
		size += len(kvs[n].Value)
		n++
	}
	return n
}

// Resealed is what Reencrypt re-sealed: values, and audit records and
// index entries (which keep the old and new values of sensitive keys).
type Resealed struct {
	Values int
	Audit  int
}

// Reencrypt re-seals every value that is not sealed with the key that would
// seal it now (a rotation made a newer one), and seals values of sensitive
// keys written in clear before the key became sensitive; then, in place,
// every sealed value of the audit trail (resealAudit), so that the older
// key seals nothing and can be retired. Each batch is one transaction
// guarded by the mod revision of each value it rewrites and by the data
// keys' version, with an audit record; a value changed meanwhile is left to
// the next pass, so it is resumable and loses no concurrent write.
// progress, if not nil, is called after each batch with what was re-sealed
// so far and what is left of the current phase.
func (s *Store) Reencrypt(ctx context.Context, meta Meta, progress func(done, left int)) (Resealed, error) {
	if s.keys == nil {
		return Resealed{}, errNoKeyring()
	}
	if err := checkMeta(meta); err != nil {
		return Resealed{}, err
	}
	meta.Action = ActionKeys
	done := 0
	for pass := 0; ; pass++ {
		todo, ring, keysVersion, err := s.staleSeals(ctx)
		if err != nil {
			return Resealed{Values: done}, err
		}
		if len(todo) == 0 {
			// The values are done: then the audit trail's sealed values.
			n, err := s.resealAudit(ctx, meta, progress, done)
			return Resealed{Values: done, Audit: n}, err
		}
		if pass >= s.maxRetries {
			return Resealed{Values: done}, cfgerr.Errorf(cfgerr.Conflict, "", "", "%d value(s) kept changing while being re-sealed; run it again", len(todo))
		}
		for len(todo) > 0 {
			n := batchLen(todo)
			ok, err := s.reseal(ctx, meta, ring, keysVersion, todo[:n])
			if err != nil {
				return Resealed{Values: done}, err
			}
			todo = todo[n:]
			if !ok {
				break // something moved: scan again
			}
			done += n
			if progress != nil {
				progress(done, len(todo))
			}
		}
	}
}

// staleSeals returns the values to re-seal, with the data keys that seal
// them now and the version they were read at.
func (s *Store) staleSeals(ctx context.Context) ([]*mvccpb.KeyValue, *seal.Keyring, int64, error) {
	s.keys.invalidate() // the newest keys, whatever this node last saw
	ring, rev, err := s.keys.table(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	sch := s.schema.Load().schema
	var todo []*mvccpb.KeyValue
	err = s.scanValues(ctx, func(key string, kv *mvccpb.KeyValue) {
		var env envelope
		if json.Unmarshal(kv.Value, &env) != nil {
			return
		}
		if env.Sealed == nil {
			if k, ok := sch.Lookup(key); !ok || !k.Sensitive {
				return
			}
		} else if k, ok := chooseKey(ring, key); ok && k.ID == env.Sealed.Key {
			return
		}
		todo = append(todo, kv)
	})
	return todo, ring, rev, err
}

// reseal rewrites a batch of values sealed with the keys of ring; false if
// a value or the data keys changed since they were read.
func (s *Store) reseal(ctx context.Context, meta Meta, ring *seal.Keyring, keysVersion int64, kvs []*mvccpb.KeyValue) (bool, error) {
	now := s.now()
	cmps := []clientv3.Cmp{s.keys.unchanged(keysVersion)}
	var ops []clientv3.Op
	var changes []Change
	ids := map[string]bool{}
	for _, kv := range kvs {
		key, _ := s.layout.KeyOf(string(kv.Key))
		var env envelope
		if err := json.Unmarshal(kv.Value, &env); err != nil {
			return false, cfgerr.Errorf(cfgerr.Internal, key, "", "stored envelope is corrupt: %v", err)
		}
		old := env.Sealed
		if old != nil {
			raw, err := ring.Open(key, old)
			if err != nil {
				return false, cfgerr.Errorf(cfgerr.Sealed, key, "", "%v", err)
			}
			env.Value = raw
		}
		k, _ := chooseKey(ring, key)
		box, err := ring.Seal(k.ID, key, env.Value)
		if err != nil {
			return false, cfgerr.Wrap(cfgerr.Internal, err)
		}
		ids[k.ID] = true
		env.Value, env.Sealed, env.Sensitive = nil, box, true
		env.Actor, env.Time, env.Comment = meta.Actor, now.UTC(), "re-sealed with data key "+k.ID
		b, _ := json.Marshal(env)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
		ops = append(ops, clientv3.OpPut(string(kv.Key), string(b)))
		changes = append(changes, Change{Key: key, Old: Redacted, New: Redacted, OldRevision: kv.ModRevision, Redacted: true,
			OldSealed: old, NewSealed: box}) // as every change of a sensitive key: readable past compaction
	}
	if meta.Comment == "" {
		meta.Comment = fmt.Sprintf("re-sealed %d value(s) with data key(s) %s", len(kvs), strings.Join(slices.Sorted(maps.Keys(ids)), ", "))
	}
	rec := newAuditRecord(meta, now)
	rec.Changes = changes
	ops = append(ops, s.auditOps(rec)...)
	ops = append(ops, clientv3.OpPut(s.layout.LastChangeKey(), encodeChangeMeta(meta, now)))
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, EtcdError(err)
	}
	return resp.Succeeded, nil
}

// resealAudit re-seals, in place, the boxes of the audit records and index
// entries (the old and new values of sensitive keys) that a data key other
// than the one that would seal them now sealed. A record keeps its
// revision (auditRev: its creation's) and its place in the trail. Batches
// are guarded like Reencrypt's, each with an audit record of its own that
// says what it did; it returns how many records and entries it rewrote.
func (s *Store) resealAudit(ctx context.Context, meta Meta, progress func(done, left int), before int) (int, error) {
	done := 0
	for pass := 0; ; pass++ {
		s.keys.invalidate()
		ring, keysVersion, err := s.keys.table(ctx)
		if err != nil {
			return done, err
		}
		var todo []*mvccpb.KeyValue
		var rewrites [][]byte
		err = s.scanRange(ctx, s.layout.prefix+"v1/audit", func(kv *mvccpb.KeyValue) {
			if !bytes.Contains(kv.Value, []byte(`"k":"`)) {
				return // no box
			}
			if b, changed, err := s.resealAuditValue(ring, kv); err == nil && changed {
				todo, rewrites = append(todo, kv), append(rewrites, b)
			}
		})
		if err != nil || len(todo) == 0 {
			return done, err
		}
		if pass >= s.maxRetries {
			return done, cfgerr.Errorf(cfgerr.Conflict, "", "", "%d audit record(s) kept changing while being re-sealed; run it again", len(todo))
		}
		for len(todo) > 0 {
			n := batchLen(todo)
			now := s.now()
			cmps := []clientv3.Cmp{s.keys.unchanged(keysVersion)}
			var ops []clientv3.Op
			for i, kv := range todo[:n] {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
				ops = append(ops, clientv3.OpPut(string(kv.Key), string(rewrites[i])))
			}
			m := meta
			m.Comment = fmt.Sprintf("re-sealed the sealed values of %d audit record(s) and index entries", n)
			rec := newAuditRecord(m, now)
			ops = append(ops, s.auditOps(rec)...)
			resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return done, EtcdError(err)
			}
			todo, rewrites = todo[n:], rewrites[n:]
			if !resp.Succeeded {
				break // something moved (pruned, a key rotated): scan again
			}
			done += n
			if progress != nil {
				progress(before+done, len(todo))
			}
		}
	}
}

// resealAuditValue returns an audit record or index entry with every box
// sealed by the data key that would seal it now, and whether any changed.
// The JSON is rewritten field by field: what it does not know stays as it
// was.
func (s *Store) resealAuditValue(ring *seal.Keyring, kv *mvccpb.KeyValue) ([]byte, bool, error) {
	changed := false
	reseal := func(obj map[string]json.RawMessage, field, key string) error {
		raw, ok := obj[field]
		if !ok || string(raw) == "null" {
			return nil
		}
		var box seal.Box
		if err := json.Unmarshal(raw, &box); err != nil {
			return err
		}
		k, ok := chooseKey(ring, key)
		if !ok || k.ID == box.Key {
			return nil
		}
		plain, err := ring.Open(key, &box)
		if err != nil {
			return err
		}
		next, err := ring.Seal(k.ID, key, plain)
		if err != nil {
			return err
		}
		obj[field], _ = json.Marshal(next)
		changed = true
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(kv.Value, &obj); err != nil {
		return nil, false, err
	}
	if id, ok := strings.CutPrefix(string(kv.Key), s.layout.AuditPrefix()); ok && id != "" {
		var changes []map[string]json.RawMessage
		if err := json.Unmarshal(obj["changes"], &changes); err != nil {
			return nil, false, err
		}
		for _, c := range changes {
			var key string
			json.Unmarshal(c["key"], &key)
			for _, f := range []string{"old_sealed", "new_sealed"} {
				if err := reseal(c, f, key); err != nil {
					return nil, false, err
				}
			}
		}
		obj["changes"], _ = json.Marshal(changes)
	} else if rest, ok := strings.CutPrefix(string(kv.Key), s.layout.AuditKeysPrefix()); ok {
		key, _, _ := strings.Cut(rest, ":")
		if err := reseal(obj, "sealed", key); err != nil {
			return nil, false, err
		}
	}
	if !changed {
		return nil, false, nil
	}
	b, err := json.Marshal(obj)
	return b, true, err
}

// scanValues calls fn with every stored value, in pages, at one revision.
func (s *Store) scanValues(ctx context.Context, fn func(key string, kv *mvccpb.KeyValue)) error {
	return s.scanRange(ctx, s.layout.ValuesPrefix(), func(kv *mvccpb.KeyValue) {
		key, _ := s.layout.KeyOf(string(kv.Key))
		fn(key, kv)
	})
}

// validScope checks a data key's scope: "" or the start of key names.
func validScope(prefix string) error {
	for _, r := range prefix {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return cfgerr.Errorf(cfgerr.Invalid, "", "prefix", "%q is not the start of a key name: lowercase letters, digits, '.', '_' and '-' only", prefix)
		}
	}
	if len(prefix) > 256 {
		return cfgerr.Errorf(cfgerr.Invalid, "", "prefix", "a prefix of %d bytes is longer than a key name may be (256)", len(prefix))
	}
	return nil
}

func scopeName(prefix string) string {
	if prefix == "" {
		return "every key"
	}
	return prefix
}

func errNoKeyring() error {
	return cfgerr.Errorf(cfgerr.FailedPrecondition, "", "", "this node has no encryption keyring (--encryption-keyring)")
}

package kv

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

// DefaultMaxRetries is how many times a change is retried after losing to a
// concurrent one before it fails with a Conflict error.
const DefaultMaxRetries = 16

// Store is the configuration store on etcd. It is safe for concurrent use and
// starts no goroutines.
type Store struct {
	kv         clientv3.KV
	layout     Layout
	log        *zap.Logger
	metrics    *Metrics
	maxRetries int
	now        func() time.Time

	schema atomic.Pointer[loadedSchema]
	// past caches schemas read at old revisions, by their mod revision:
	// reads at a revision would otherwise parse one per request.
	past *lru.Cache[int64, *schema.Schema]

	// seen caches the last known state of the keys changes read and wrote
	// (etcd key → kv; ModRevision 0 for an absent key). A change reads from
	// it without a round trip; the commit's compares catch anything stale,
	// and a failed commit's Else branch brings the fresh state back in the
	// same round trip, as etcd's STM and leasing cache do.
	mu     sync.Mutex
	seen   map[string]seenKV
	warmed bool // the schema has been read once: its compare guards it since
}

type seenKV struct {
	kv *mvccpb.KeyValue
	at int64 // the store revision at which kv was observed
}

// pastSchemas is how many schemas of old revisions a store keeps parsed.
const pastSchemas = 16

// maxSeen bounds the seen cache; past it the cache starts over.
const maxSeen = 100_000

type loadedSchema struct {
	rev    int64 // mod revision of the schema key; 0 when there is none
	doc    []byte
	schema *schema.Schema
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the etcd prefix (default DefaultPrefix).
func WithPrefix(p string) Option { return func(s *Store) { s.layout = NewLayout(p) } }

// WithLogger sets the logger.
func WithLogger(l *zap.Logger) Option { return func(s *Store) { s.log = l } }

// WithMetrics sets the metrics the store counts into.
func WithMetrics(m *Metrics) Option { return func(s *Store) { s.metrics = m } }

// WithMaxRetries sets how many times a conflicting change is retried.
func WithMaxRetries(n int) Option { return func(s *Store) { s.maxRetries = n } }

// New returns a Store over an etcd KV (a client, or a namespace.NewKV wrapper).
func New(kv clientv3.KV, opts ...Option) *Store {
	past, _ := lru.New[int64, *schema.Schema](pastSchemas)
	s := &Store{kv: kv, layout: NewLayout(""), log: zap.NewNop(), maxRetries: DefaultMaxRetries, now: time.Now,
		seen: map[string]seenKV{}, past: past}
	for _, o := range opts {
		o(s)
	}
	s.schema.Store(&loadedSchema{schema: emptySchema()})
	return s
}

// Layout returns the store's key layout.
func (s *Store) Layout() Layout { return s.layout }

func emptySchema() *schema.Schema {
	sch, _ := schema.Parse(nil)
	return sch
}

// Meta describes a change for its audit record.
type Meta struct {
	Actor   string
	Comment string
	Action  string // one of the Action constants
	DryRun  bool   // validate and report, write nothing
}

// Result is what a change did.
type Result struct {
	Revision int64    `json:"revision"` // the change's revision; 0 for a dry run
	Changes  []Change `json:"changes"`
	DryRun   bool     `json:"dry_run,omitempty"`
}

// Write is one key's part of a change.
type Write struct {
	Key    string
	Value  any     // a decoded JSON/YAML value or a typed one; see schema.Key.Coerce
	Text   *string // command-line text parsed by the key's type; used instead of Value when set
	Delete bool    // remove the stored value: the key falls back to its default
	// ExpectRevision, when set, must equal the key's current mod revision
	// (0: the key must have no value), or the change fails with FailedPrecondition.
	ExpectRevision *int64
}

// Tx is a change in progress: reads see the store at one revision, writes
// are buffered until Update commits them. A Tx is used by one goroutine.
type Tx struct {
	ctx    context.Context
	s      *Store
	loaded *loadedSchema
	reads  map[string]*mvccpb.KeyValue // etcd key → kv as read, guarded one by one; ModRevision 0: absent
	// listing holds what List read (etcd key → kv), guarded as a whole by
	// the generation key's mod revision as List saw it (listGen).
	listing map[string]*mvccpb.KeyValue
	listed  bool
	listGen int64
	writes  map[string]*pending
	order   []string
	doc     []byte         // a new schema document, if the change sets one
	newSch  *schema.Schema // its parsed form
}

type pending struct {
	key   *schema.Key
	value any             // nil: delete
	raw   json.RawMessage // the encoded value
}

// Update runs fn in a transaction and commits what it wrote in one etcd
// transaction with its audit record, after checking every rule that reads a
// written key (every rule, when the schema changes) on the state after the
// write. fn may run more than once: it must have no effects outside tx.
// prefetch names keys fn will read, so they come in the first round trip.
func (s *Store) Update(ctx context.Context, meta Meta, prefetch []string, fn func(tx *Tx) error) (*Result, error) {
	start := s.now()
	res, err := s.update(ctx, meta, prefetch, fn)
	if m := s.metrics; m != nil {
		outcome := "ok"
		if err != nil {
			outcome = string(cfgerr.CodeOf(err))
		} else if meta.DryRun {
			outcome = "dry_run"
		}
		m.writes.WithLabelValues(meta.Action, outcome).Inc()
		m.commitSecs.Observe(time.Since(start).Seconds())
	}
	return res, err
}

func (s *Store) update(ctx context.Context, meta Meta, prefetch []string, fn func(tx *Tx) error) (*Result, error) {
	if err := checkMeta(meta); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		tx, err := s.begin(ctx, prefetch)
		if err != nil {
			return nil, err
		}
		var res *Result
		ok := false
		if err = fn(tx); err != nil {
			if err = tx.confirm(err); err != nil {
				s.countInvalid(err, "type")
				return nil, err
			}
		} else if res, ok, err = tx.commit(meta); ok || err != nil && !(errors.Is(err, rpctypes.ErrNoLeader) && attempt+1 < s.maxRetries) {
			// A member without a leader refuses before proposing: the
			// change was not made, and a retry may find a leader.
			return res, err
		}
		if s.metrics != nil {
			s.metrics.conflicts.Inc()
		}
		if attempt+1 >= s.maxRetries {
			if s.metrics != nil {
				s.metrics.retries.Inc()
			}
			return nil, cfgerr.Errorf(cfgerr.Conflict, firstKey(tx.order), "", "lost to concurrent changes %d times; try again", s.maxRetries)
		}
		// The first retry runs at once, on the fresh state the failed
		// commit's Else branch brought back (a sleep would let it go stale);
		// later ones back off with full jitter: up to 1ms, 2ms ... 64ms.
		if attempt == 0 {
			continue
		}
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt-1, 6)))
		select {
		case <-ctx.Done():
			return nil, EtcdError(ctx.Err())
		case <-time.After(d):
		}
	}
}

func (s *Store) countInvalid(err error, reason string) {
	if s.metrics != nil && cfgerr.CodeOf(err) == cfgerr.Invalid {
		s.metrics.invalid.WithLabelValues(reason).Inc()
	}
}

func firstKey(keys []string) string {
	if len(keys) > 0 {
		return keys[0]
	}
	return ""
}

// begin starts a transaction. It takes what it needs from the seen cache
// and reads the rest (the schema, the first time) in one serializable read:
// the nearest member answers. Nothing read is trusted: the commit compares
// every read's mod revision, so a stale read only makes it fail and retry.
func (s *Store) begin(ctx context.Context, prefetch []string) (*Tx, error) {
	cur := s.schema.Load()
	keys := prefetch
	if rules := cur.schema.RulesFor(prefetch...); len(rules) > 0 {
		keys = append([]string{}, prefetch...)
		for _, r := range rules {
			keys = append(keys, r.Keys...)
		}
	}
	tx := &Tx{ctx: ctx, s: s, loaded: cur, reads: map[string]*mvccpb.KeyValue{}, writes: map[string]*pending{}}
	var missing []string
	s.mu.Lock()
	warmed := s.warmed
	for _, k := range keys {
		ek := s.layout.ValueKey(k)
		if sk, ok := s.seen[ek]; ok {
			tx.reads[ek] = sk.kv
		} else if _, dup := tx.reads[ek]; !dup {
			tx.reads[ek] = nil
			missing = append(missing, ek)
		}
	}
	s.mu.Unlock()
	if warmed && len(missing) == 0 {
		return tx, nil
	}
	ops := []clientv3.Op{clientv3.OpGet(s.layout.SchemaKey(), clientv3.WithSerializable())}
	for _, ek := range missing {
		ops = append(ops, clientv3.OpGet(ek, clientv3.WithSerializable()))
	}
	resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, EtcdError(err)
	}
	if tx.loaded, err = s.loadSchema(resp.Responses[0].GetResponseRange().Kvs); err != nil {
		return nil, err
	}
	for i, ek := range missing {
		tx.reads[ek] = s.remember(ek, resp.Responses[i+1].GetResponseRange().Kvs, resp.Header.Revision)
	}
	s.mu.Lock()
	s.warmed = true
	s.mu.Unlock()
	return tx, nil
}

// remember records what a read at revision at found for an etcd key, unless
// a later observation is recorded already, and returns it (an absent key as
// a kv with ModRevision 0).
func (s *Store) remember(ek string, kvs []*mvccpb.KeyValue, at int64) *mvccpb.KeyValue {
	kv := first(kvs)
	if kv == nil {
		kv = &mvccpb.KeyValue{Key: []byte(ek)}
	}
	s.mu.Lock()
	if len(s.seen) >= maxSeen {
		s.seen = map[string]seenKV{}
	}
	if old, ok := s.seen[ek]; !ok || old.at <= at {
		s.seen[ek] = seenKV{kv: kv, at: at}
	}
	s.mu.Unlock()
	return kv
}

// loadSchema parses the stored schema if it changed since the last load.
func (s *Store) loadSchema(kvs []*mvccpb.KeyValue) (*loadedSchema, error) {
	kv := first(kvs)
	cur := s.schema.Load()
	if kv == nil {
		if cur.rev == 0 {
			return cur, nil
		}
		l := &loadedSchema{schema: emptySchema()}
		s.schema.Store(l)
		return l, nil
	}
	if kv.ModRevision == cur.rev {
		return cur, nil
	}
	sch, err := schema.Parse(kv.Value)
	if err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "schema", "the stored schema (revision %d) does not parse: %v", kv.ModRevision, err)
	}
	l := &loadedSchema{rev: kv.ModRevision, doc: kv.Value, schema: sch}
	if l.rev > s.schema.Load().rev {
		s.schema.Store(l)
	}
	return l, nil
}

func first(kvs []*mvccpb.KeyValue) *mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
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
	return decodeEntry(tx.loaded.schema, key, kv)
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
// created, changed or deleted since, by the generation key alone.
func (tx *Tx) List() ([]*Entry, error) {
	l := tx.s.layout
	resp, err := tx.s.kv.Txn(tx.ctx).Then(
		clientv3.OpGet(l.GenerationKey(), clientv3.WithSerializable()),
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
		e, err := decodeEntry(tx.loaded.schema, key, kv)
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
	p := &pending{key: k}
	if w.Delete {
		kv, err := tx.read(w.Key)
		if err != nil {
			return err
		}
		if kv.ModRevision == 0 {
			return cfgerr.Errorf(cfgerr.NotFound, w.Key, "", "the key has no value to delete")
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
	if _, dup := tx.writes[w.Key]; dup {
		return cfgerr.Errorf(cfgerr.Invalid, w.Key, "", "the key is written twice in one change")
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
	return sch.Check(rules, func(k string) (any, bool) { v, ok := vals[k]; return v, ok }, tx.order...)
}

// commit checks the change and writes it. ok is false when a concurrent
// change won and the caller should retry.
func (tx *Tx) commit(meta Meta) (res *Result, ok bool, err error) {
	if len(tx.order) == 0 && tx.newSch == nil {
		return nil, false, cfgerr.Errorf(cfgerr.Invalid, "", "changes", "the change writes nothing")
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
	now := tx.s.now()
	rec := newAuditRecord(meta, now)
	var ops []clientv3.Op
	for _, key := range tx.order {
		p := tx.writes[key]
		ek := tx.s.layout.ValueKey(key)
		old, err := tx.read(key)
		if err != nil {
			return nil, false, err
		}
		c := Change{Key: key, New: redact(p.key, p.value), Deleted: p.value == nil, Redacted: p.key.Sensitive}
		if old.ModRevision != 0 {
			prev, err := decodeEntry(tx.loaded.schema, key, old)
			if err != nil {
				return nil, false, err
			}
			c.Old, c.OldRevision = redact(p.key, prev.Value), old.ModRevision
		}
		rec.Changes = append(rec.Changes, c)
		if p.value == nil {
			ops = append(ops, clientv3.OpDelete(ek))
			continue
		}
		ops = append(ops, clientv3.OpPut(ek, string(encodeEnvelope(p.key, p.raw, meta.Actor, meta.Comment, now))))
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
		return &Result{Changes: rec.Changes, DryRun: true}, true, nil
	}
	ops = append(ops, tx.s.auditOps(rec)...)

	if len(tx.order) > 0 {
		ops = append(ops, clientv3.OpPut(tx.s.layout.GenerationKey(), ""))
	}
	// If every read is still current, write; else read back what changed,
	// in the same round trip, for the retry.
	cmps, elses, keys := tx.guards()
	resp, err := tx.s.kv.Txn(tx.ctx).If(cmps...).Then(ops...).Else(elses...).Commit()
	if err != nil {
		tx.s.forget(keys)
		return nil, false, EtcdError(err)
	}
	if !resp.Succeeded {
		return nil, false, tx.refresh(resp, keys)
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
	return &Result{Revision: rev, Changes: rec.Changes}, true, nil
}

// guards are the commit's compares (every read, the listing and the schema
// still as the transaction saw them) and the reads its Else branch makes
// for a retry; keys are the etcd keys read one by one, in the order of the
// Else reads after the schema's (and the generation key's, after a List).
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
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.GenerationKey()), "=", tx.listGen))
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

// EtcdError turns an etcd client error into a coded one: bad input (a
// request too large, a compacted or future revision) keeps its code, and
// only what retrying may cure is Unavailable.
func EtcdError(err error) error {
	if err == nil {
		return nil
	}
	var ce *cfgerr.Error
	switch {
	case errors.As(err, &ce):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd did not answer in time: " + err.Error(), Err: err}
	case errors.Is(err, rpctypes.ErrCompacted):
		return &cfgerr.Error{Code: cfgerr.NotFound, Field: "revision", Message: "that revision has been compacted", Err: err}
	case errors.Is(err, rpctypes.ErrFutureRev):
		return &cfgerr.Error{Code: cfgerr.NotFound, Field: "revision", Message: "that revision is in the future", Err: err}
	case errors.Is(err, rpctypes.ErrNoSpace):
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd is out of space (NOSPACE alarm): writes are refused until it is compacted, defragmented and the alarm disarmed (docs/OPERATIONS.md)", Err: err}
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change has too many keys for one etcd transaction (each key takes two operations, its value and its audit entry): split it, or raise etcd's --max-txn-ops: " + err.Error(), Err: err}
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change is too large for one etcd transaction (each value is sent twice, with its audit entry): split it, or raise etcd's --max-request-bytes: " + err.Error(), Err: err}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd is unavailable: " + err.Error(), Err: err}
	case codes.ResourceExhausted:
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change is too large for etcd: " + err.Error(), Err: err}
	}
	return &cfgerr.Error{Code: cfgerr.Internal, Message: "etcd: " + err.Error(), Err: err}
}

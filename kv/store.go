package kv

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

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
}

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
	s := &Store{kv: kv, layout: NewLayout(""), log: zap.NewNop(), maxRetries: DefaultMaxRetries, now: time.Now}
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
	rev    int64
	reads  map[string]*mvccpb.KeyValue // etcd key → kv at rev; nil value: absent
	listed bool
	writes map[string]*pending
	order  []string
	doc    []byte         // a new schema document, if the change sets one
	newSch *schema.Schema // its parsed form
}

type pending struct {
	key   *schema.Key
	value any // nil: delete
	data  []byte
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
	for attempt := 0; ; attempt++ {
		tx, err := s.begin(ctx, prefetch)
		if err != nil {
			return nil, err
		}
		if err := fn(tx); err != nil {
			s.countInvalid(err, "type")
			return nil, err
		}
		res, ok, err := tx.commit(meta)
		if err != nil || ok {
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
		// Full-jitter exponential backoff: up to 1ms, 2ms, 4ms ... capped at 64ms.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
		select {
		case <-ctx.Done():
			return nil, etcdError(ctx.Err())
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

// begin reads the schema and the prefetched keys at one revision with a
// serializable read: the nearest member answers, and a stale answer only
// makes the commit's compares fail and the change retry.
func (s *Store) begin(ctx context.Context, prefetch []string) (*Tx, error) {
	cur := s.schema.Load()
	keys := prefetch
	if rules := cur.schema.RulesFor(prefetch...); len(rules) > 0 {
		keys = append([]string{}, prefetch...)
		for _, r := range rules {
			keys = append(keys, r.Keys...)
		}
	}
	ops := []clientv3.Op{clientv3.OpGet(s.layout.SchemaKey(), clientv3.WithSerializable())}
	for _, k := range keys {
		ops = append(ops, clientv3.OpGet(s.layout.ValueKey(k), clientv3.WithSerializable()))
	}
	resp, err := s.kv.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, etcdError(err)
	}
	tx := &Tx{ctx: ctx, s: s, rev: resp.Header.Revision, reads: map[string]*mvccpb.KeyValue{}, writes: map[string]*pending{}}
	tx.loaded, err = s.loadSchema(resp.Responses[0].GetResponseRange().Kvs)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		tx.reads[s.layout.ValueKey(k)] = first(resp.Responses[i+1].GetResponseRange().Kvs)
	}
	return tx, nil
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

// Revision is the revision the transaction reads at.
func (tx *Tx) Revision() int64 { return tx.rev }

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
	if err != nil || kv == nil {
		return nil, err
	}
	return decodeEntry(tx.loaded.schema, key, kv)
}

func (tx *Tx) read(key string) (*mvccpb.KeyValue, error) {
	ek := tx.s.layout.ValueKey(key)
	if kv, ok := tx.reads[ek]; ok {
		return kv, nil
	}
	if tx.listed {
		return nil, nil // List read every stored key: this one has no value
	}
	resp, err := tx.s.kv.Get(tx.ctx, ek, clientv3.WithRev(tx.rev), clientv3.WithSerializable())
	if err != nil {
		return nil, etcdError(err)
	}
	kv := first(resp.Kvs)
	tx.reads[ek] = kv
	return kv, nil
}

// List returns every stored entry as of the transaction's revision, sorted
// by key (the transaction's own writes are not applied). The commit is then
// guarded against any value created, changed or deleted since.
func (tx *Tx) List() ([]*Entry, error) {
	resp, err := tx.s.kv.Get(tx.ctx, tx.s.layout.ValuesPrefix(), clientv3.WithPrefix(),
		clientv3.WithRev(tx.rev), clientv3.WithSerializable())
	if err != nil {
		return nil, etcdError(err)
	}
	out := make([]*Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key, _ := tx.s.layout.KeyOf(string(kv.Key))
		tx.reads[string(kv.Key)] = kv
		e, err := decodeEntry(tx.loaded.schema, key, kv)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
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
		kv, err := tx.read(w.Key)
		if err != nil {
			return err
		}
		var have int64
		if kv != nil {
			have = kv.ModRevision
		}
		if have != *w.ExpectRevision {
			return cfgerr.Errorf(cfgerr.FailedPrecondition, w.Key, "expect_revision", "expected revision %d, the key is at revision %d", *w.ExpectRevision, have)
		}
	}
	p := &pending{key: k}
	if w.Delete {
		kv, err := tx.read(w.Key)
		if err != nil {
			return err
		}
		if kv == nil {
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
		if p.data, err = encodeEnvelope(k, p.value, "", "", time.Time{}); err != nil {
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
		reason := "rule"
		if tx.newSch != nil {
			reason = "schema"
		}
		tx.s.countInvalid(err, reason)
		return nil, false, err
	}
	now := tx.s.now()
	rec := AuditRecord{Time: now.UTC(), Actor: meta.Actor, Action: meta.Action, Comment: meta.Comment}
	var ops []clientv3.Op
	for _, key := range tx.order {
		p := tx.writes[key]
		ek := tx.s.layout.ValueKey(key)
		old, err := tx.read(key)
		if err != nil {
			return nil, false, err
		}
		c := Change{Key: key, New: redact(p.key, p.value), Deleted: p.value == nil, Redacted: p.key.Sensitive}
		if old != nil {
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
		data, err := encodeEnvelope(p.key, p.value, meta.Actor, meta.Comment, now)
		if err != nil {
			return nil, false, err
		}
		ops = append(ops, clientv3.OpPut(ek, string(data)))
	}
	if tx.newSch != nil {
		rec.SchemaChanged, rec.SchemaRevision = true, tx.loaded.rev
		ops = append(ops, clientv3.OpPut(tx.s.layout.SchemaKey(), string(tx.doc)))
	}
	if meta.DryRun {
		return &Result{Changes: rec.Changes, DryRun: true}, true, nil
	}
	audit, _ := json.Marshal(rec)
	ops = append(ops, clientv3.OpPut(tx.s.layout.newAuditKey(now), string(audit)))

	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(tx.s.layout.SchemaKey()), "=", tx.loaded.rev)}
	keys := make([]string, 0, len(tx.reads))
	for k := range tx.reads {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var rev int64
		if kv := tx.reads[k]; kv != nil {
			rev = kv.ModRevision
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	if tx.listed {
		// No value created or changed since the listing (deletions are
		// caught by the per-key compares above).
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(tx.s.layout.ValuesPrefix()), "<", tx.rev+1).WithPrefix())
	}
	resp, err := tx.s.kv.Txn(tx.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, false, etcdError(err)
	}
	if !resp.Succeeded {
		return nil, false, nil
	}
	if tx.newSch != nil {
		tx.s.loadSchema([]*mvccpb.KeyValue{{ModRevision: resp.Header.Revision, Value: tx.doc}})
	}
	return &Result{Revision: resp.Header.Revision, Changes: rec.Changes}, true, nil
}

// etcdError turns an etcd client error into a coded one.
func etcdError(err error) error {
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
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrTooManyOps):
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change is too large for one etcd transaction: " + err.Error(), Err: err}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd is unavailable: " + err.Error(), Err: err}
	case codes.ResourceExhausted:
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change is too large for etcd: " + err.Error(), Err: err}
	}
	return &cfgerr.Error{Code: cfgerr.Internal, Message: "etcd: " + err.Error(), Err: err}
}

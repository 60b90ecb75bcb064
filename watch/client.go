package watch

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

// Source says where a value came from, in the order the client looks.
type Source string

const (
	SourceEnvironment Source = "environment" // CFG_<KEY> overrides everything
	SourceCluster     Source = "cluster"     // etcd, through the watch or a read
	SourceSnapshot    Source = "snapshot"    // the last-known snapshot file, while etcd cannot be reached
	SourceDefault     Source = "default"     // the schema default
)

// Value is a key's value with its metadata (the seed design's
// ConfigurationValue). Value is the typed value (see package schema), shared
// with the cache: treat a list or json value as read-only.
type Value struct {
	Key             string
	Value           any
	Type            schema.Type
	Source          Source
	RequiresRestart bool
	Revision        int64     // the etcd revision that wrote it; 0 for defaults and the environment
	LastUpdated     time.Time // when it was written (the writer's clock)
	CachedAt        time.Time
	TTL             time.Duration
	Actor           string
	Comment         string
	// Stale is set while the client has not listed the cluster since it
	// started (etcd was unreachable): the value comes from the snapshot or
	// the default and may be behind the cluster.
	Stale bool
}

// Etcd is what the client needs of etcd: *clientv3.Client, or namespace
// wrappers of its KV and Watcher.
type Etcd interface {
	clientv3.KV
	clientv3.Watcher
}

// Client is a service's view of the configuration (the seed design's
// ConfigurationService): one etcd watch, a cache kept current by it, the
// fallback chain, and subscribers. Create it with New; Close stops it.
type Client struct {
	etcd   Etcd
	opt    options
	log    *zap.Logger
	layout kv.Layout
	met    *metrics
	cache  *cache
	mux    *mux

	ownSchema bool // the service gave its schema: cluster schema changes do not replace it
	sch       atomic.Pointer[schema.Schema]

	applyMu sync.Mutex // serialises applying changes, so batches reach subscribers in order

	mu        sync.Mutex
	schemaRev int64            // mod revision of the cluster schema adopted
	schemaDoc []byte           // its document, for the snapshot
	raw       map[string]held  // every value's last valid kv, decoded, by config key
	rev       int64            // the revision applied
	changed   int64            // the revision of the last change in the range applied
	from      Source           // cluster, or snapshot until the first list
	frozen    map[string]Value // requires_restart keys: their values at start
	pending   map[string]Value // requires_restart keys: newer cluster values
	rejected  map[string]Rejection
	env       map[string]Value
	revCh     chan struct{}         // closed and replaced whenever rev advances
	windows   map[string]*kv.Window // maintenance windows by scope, as stored

	synced    atomic.Bool
	attempts  atomic.Uint64 // watch streams opened
	confirmed atomic.Int64  // unix nanos when etcd last confirmed the revision
	clusterID atomic.Uint64 // etcd's cluster id at the last list
	snapDirty chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	done   chan struct{} // closed by Close: wakes WaitRevision
}

// Rejection is a cluster value that failed the client's schema.
type Rejection struct {
	Key      string
	Revision int64
	Reason   string
	Time     time.Time
}

// New starts a client: it lists the configuration (or, if etcd cannot be
// reached within the start timeout, loads the snapshot file), then watches
// for changes until Close. It fails only when it has neither etcd nor a
// snapshot and no schema to give defaults from.
func New(ctx context.Context, etcd Etcd, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	c := &Client{
		etcd: etcd, opt: o, log: o.log, layout: kv.NewLayout(o.prefix), met: newMetrics(),
		cache: newCache(o.cacheSize), raw: map[string]held{}, frozen: map[string]Value{},
		pending: map[string]Value{}, rejected: map[string]Rejection{}, snapDirty: make(chan struct{}, 1),
		revCh: make(chan struct{}), windows: map[string]*kv.Window{}, done: make(chan struct{}),
	}
	c.mux = newMux(o.log, c.met, o.workers, o.queueSize, o.slow)
	if o.schema != nil {
		c.ownSchema = true
		c.sch.Store(o.schema)
	} else {
		empty, _ := schema.Parse(nil)
		c.sch.Store(empty)
	}
	if o.reg != nil {
		if err := c.register(o.reg); err != nil {
			c.mux.close()
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel

	startCtx, stop := context.WithTimeout(ctx, o.startTimeout)
	_, err := c.list(startCtx)
	stop()
	if err != nil {
		c.log.Warn("etcd unreachable at start; serving from the snapshot", zap.Error(err))
		if serr := c.loadSnapshot(); serr != nil {
			if c.ownSchema {
				c.log.Warn("no snapshot either; serving environment and schema defaults", zap.Error(serr))
			} else {
				cancel()
				c.mux.close()
				return nil, cfgerr.Errorf(cfgerr.Unavailable, "", "", "etcd unreachable (%v) and no snapshot (%v)", err, serr)
			}
		}
	}
	c.loadEnv()
	c.freeze()
	c.wg.Add(2)
	go c.watchLoop(runCtx)
	go c.housekeeping(runCtx)
	return c, nil
}

// Close stops the watch and the workers and writes a final snapshot. It is
// safe to call more than once, and from a handler: then it returns without
// waiting for the handler workers, which stop as their calls return.
func (c *Client) Close() error {
	c.closed.Do(func() {
		close(c.done)
		c.cancel()
		c.wg.Wait()
		c.mux.close()
		if c.opt.snapshot != "" && c.synced.Load() {
			if err := c.writeSnapshot(); err != nil {
				c.log.Warn("final snapshot", zap.Error(err))
			}
		}
	})
	return nil
}

// Layout is the key layout the client reads.
func (c *Client) Layout() kv.Layout { return c.layout }

// Schema is the schema the client checks values against: the service's own
// (WithSchema) or the cluster's.
func (c *Client) Schema() *schema.Schema { return c.sch.Load() }

// Revision is the etcd revision the client has applied.
func (c *Client) Revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// LastChange is the revision of the last change to the client's range that
// it applied (values, schema, windows): what an instance reports as applied.
func (c *Client) LastChange() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WaitRevision waits until the client has applied revision rev (a write's
// revision, for read-your-writes): once it returns nil, the cache answers
// with rev's values. It fails when ctx is done or the client is closed.
func (c *Client) WaitRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.Lock()
		cur, ch := c.rev, c.revCh
		c.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return cfgerr.Errorf(cfgerr.Unavailable, "", "revision", "revision %d not applied yet (at %d): %v", rev, cur, ctx.Err())
		case <-c.done:
			return cfgerr.Errorf(cfgerr.Unavailable, "", "revision", "revision %d not applied: the client is closed", rev)
		case <-ch:
		}
	}
}

// HasSynced reports whether the client has listed the cluster once.
func (c *Client) HasSynced() bool { return c.synced.Load() }

// Staleness is how long ago etcd last confirmed the client is current (by an
// event, a list or a progress notification). A quiet cluster stays fresh.
func (c *Client) Staleness() time.Duration {
	t := c.confirmed.Load()
	if t == 0 {
		return 0
	}
	return time.Since(time.Unix(0, t))
}

// Get returns a key's value, or def if it has none anywhere in the chain.
// A list or json value is shared with the cache: treat it as read-only.
func (c *Client) Get(key string, def any) any {
	if e, ok := c.cache.get(key); ok {
		return e.val.Value
	}
	v, err := c.resolve(key)
	if err != nil {
		return def
	}
	return v.Value
}

// typed reads a value of type T; def when missing or of another type. A hit
// takes no lock and allocates nothing.
func typed[T any](c *Client, key string, def T) T {
	var v any
	if e, ok := c.cache.get(key); ok {
		v = e.val.Value
	} else if val, err := c.resolve(key); err == nil {
		v = val.Value
	}
	if t, ok := v.(T); ok {
		return t
	}
	return def
}

// Bool returns a bool key's value, or def.
func (c *Client) Bool(key string, def bool) bool { return typed(c, key, def) }

// Int returns an int key's value, or def.
func (c *Client) Int(key string, def int64) int64 { return typed(c, key, def) }

// Float returns a float key's value, or def.
func (c *Client) Float(key string, def float64) float64 { return typed(c, key, def) }

// String returns a string or enum key's value, or def.
func (c *Client) String(key string, def string) string { return typed(c, key, def) }

// Duration returns a duration key's value, or def.
func (c *Client) Duration(key string, def time.Duration) time.Duration { return typed(c, key, def) }

// Strings returns a copy of a list key's value, or def.
func (c *Client) Strings(key string, def []string) []string {
	if l, ok := c.Get(key, nil).([]string); ok {
		return append([]string(nil), l...)
	}
	return def
}

// JSON decodes a json key's value into out (a pointer to a struct or map).
func (c *Client) JSON(key string, out any) error {
	v, err := c.Lookup(key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v.Value)
	if err != nil {
		return cfgerr.Errorf(cfgerr.Invalid, key, "value", "cannot be encoded: %v", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return cfgerr.Errorf(cfgerr.Invalid, key, "value", "does not decode into %T: %v", out, err)
	}
	return nil
}

// Lookup returns a key's value with its metadata, looking in order at the
// environment, the cache, the watched state (or etcd, before the first
// list), the snapshot and the schema default. Errors: NotFound for a key
// with no value anywhere, Invalid for a bad key name.
func (c *Client) Lookup(key string) (Value, error) {
	if e, ok := c.cache.get(key); ok {
		return e.val, nil
	}
	return c.resolve(key)
}

// resolve is a lookup after a cache miss: the rest of the chain.
func (c *Client) resolve(key string) (Value, error) {
	if err := schema.ValidKeyName(key); err != nil {
		return Value{}, err
	}
	// Resolve and fill the cache under c.mu, so a change the watch applies
	// meanwhile cannot be overwritten by the older value found here.
	c.mu.Lock()
	v, ok := c.resolveLocked(key)
	if !ok && c.synced.Load() {
		v, ok = c.defaultValue(key)
	}
	if ok && !c.synced.Load() && v.Source != SourceEnvironment {
		v.Stale = true
	}
	if ok {
		c.cache.update([]*entry{c.newEntry(v)}, nil)
	}
	c.mu.Unlock()
	if !ok {
		// Not listed yet (etcd was unreachable at start) and nothing held:
		// answer at once from the rest of the chain, never by waiting on
		// etcd; the watch brings the cluster's value when etcd returns.
		v, ok = c.defaultValue(key)
		v.Stale = true
	}
	if !ok {
		if _, known := c.sch.Load().Lookup(key); !known {
			return Value{}, cfgerr.Errorf(cfgerr.NotFound, key, "", "key is not in the schema and has no value")
		}
		return Value{}, cfgerr.Errorf(cfgerr.NotFound, key, "", "the key has no value and no default")
	}
	return v, nil
}

// resolveLocked finds key in the environment, the frozen start values and
// the held state (the watched values, or the snapshot's).
func (c *Client) resolveLocked(key string) (Value, bool) {
	if v, ok := c.env[key]; ok {
		return v, true
	}
	if v, ok := c.frozen[key]; ok {
		return v, v.Value != nil // nil: the key had no value at start, and keeps none
	}
	if h, ok := c.raw[key]; ok {
		return c.valueOf(h.e, c.from), true
	}
	return Value{}, false
}

// held is a stored value as etcd gave it and as the client's schema typed it.
type held struct {
	kv *mvccpb.KeyValue
	e  *kv.Entry
}

func (c *Client) defaultValue(key string) (Value, bool) {
	k, ok := c.sch.Load().Lookup(key)
	if !ok {
		return Value{}, false
	}
	d, ok := k.DefaultValue()
	if !ok {
		return Value{}, false
	}
	return Value{Key: key, Value: d, Type: k.Type, Source: SourceDefault, RequiresRestart: k.RequiresRestart,
		TTL: c.opt.ttlFor(k.Type)}, true
}

func (c *Client) valueOf(e *kv.Entry, src Source) Value {
	v := Value{Key: e.Key, Value: e.Value, Type: e.Type, Source: src, Revision: e.Revision,
		LastUpdated: e.Time, Actor: e.Actor, Comment: e.Comment, TTL: c.opt.ttlFor(e.Type)}
	if k, ok := c.sch.Load().Lookup(e.Key); ok {
		v.RequiresRestart = k.RequiresRestart
	}
	return v
}

func (c *Client) newEntry(v Value) *entry {
	now := time.Now()
	v.CachedAt = now
	e := &entry{val: v}
	if v.TTL > 0 && v.Source != SourceEnvironment {
		e.expires = now.Add(v.TTL)
	}
	return e
}

// loadEnv reads CFG_<KEY> overrides for every schema key, typed by the schema.
func (c *Client) loadEnv() {
	sch := c.sch.Load()
	env := map[string]Value{}
	for _, name := range sch.KeyNames() {
		if c.opt.mirror {
			break
		}
		text, ok := os.LookupEnv(schema.EnvVar(c.opt.envPrefix, name))
		if !ok {
			continue
		}
		k, _ := sch.Lookup(name)
		v, err := k.ParseText(text)
		if err != nil {
			c.log.Error("ignoring a bad environment override", zap.String("var", schema.EnvVar(c.opt.envPrefix, name)), zap.Error(err))
			continue
		}
		env[name] = Value{Key: name, Value: v, Type: k.Type, Source: SourceEnvironment, RequiresRestart: k.RequiresRestart}
	}
	c.mu.Lock()
	c.env = env
	c.mu.Unlock()
	c.cache.clear()
}

// freeze records the start values of requires_restart keys: the service
// keeps them until it restarts.
func (c *Client) freeze() {
	if c.opt.mirror {
		return
	}
	sch := c.sch.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range sch.KeyNames() {
		if k, _ := sch.Lookup(name); !k.RequiresRestart {
			continue
		}
		if _, done := c.frozen[name]; done {
			continue
		}
		v, ok := c.resolveLocked(name)
		if !ok {
			v, ok = c.defaultValue(name)
		}
		if !ok { // no value at start: one set later waits for a restart too
			k, _ := sch.Lookup(name)
			v = Value{Key: name, Type: k.Type, Source: SourceDefault, RequiresRestart: true}
		}
		c.frozen[name] = v
	}
}

// RestartRequired reports whether a requires_restart key has a newer cluster
// value than the one the service started with.
func (c *Client) RestartRequired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}

// PendingRestart returns the newer cluster values waiting for a restart, by key.
func (c *Client) PendingRestart() []Value {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Value, 0, len(c.pending))
	for _, v := range c.pending {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Rejections returns the cluster values the client's schema refused (the
// last valid value of each is kept).
func (c *Client) Rejections() []Rejection {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Rejection, 0, len(c.rejected))
	for _, r := range c.rejected {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Refresh re-reads keys from etcd with a linearizable read into the cache,
// or, with no keys, re-lists everything, applying the differences and
// sending them to subscribers like any change. The watch keeps the cache
// current on its own; Refresh is for a caller that must not wait for it.
func (c *Client) Refresh(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		_, err := c.list(ctx)
		return err
	}
	for _, key := range keys {
		if err := schema.ValidKeyName(key); err != nil {
			return err
		}
		resp, err := c.etcd.Get(ctx, c.layout.ValueKey(key))
		if err != nil {
			return cfgerr.Errorf(cfgerr.Unavailable, key, "", "refresh: %v", err)
		}
		var e *kv.Entry
		if len(resp.Kvs) > 0 {
			if e, err = c.layout.Decode(c.sch.Load(), resp.Kvs[0]); err != nil {
				return err
			}
		}
		c.mu.Lock()
		_, env := c.env[key]
		_, frozen := c.frozen[key]
		h, held := c.raw[key]
		switch {
		case env || frozen:
			// The environment or the start value wins: nothing to refresh.
		case held && (e == nil || h.kv.ModRevision > e.Revision):
			// The watch has applied something newer than this read already.
		case e == nil:
			c.cache.update(nil, []string{key}) // the next Lookup resolves it
		default:
			c.cache.update([]*entry{c.newEntry(c.valueOf(e, SourceCluster))}, nil)
		}
		c.mu.Unlock()
	}
	return nil
}

// Maintenance returns the maintenance window open now on scope, or on the
// global scope (the seed design's MaintenanceModeService). A window is open
// while now < its end, whether or not its key has expired yet, and the watch
// brings openings and early ends within milliseconds.
func (c *Client) Maintenance(scope string) (kv.Window, bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range []string{scope, kv.GlobalScope} {
		if w, ok := c.windows[s]; ok && w.OpenAt(now) {
			return *w, true
		}
	}
	return kv.Window{}, false
}

// MaintenanceReason is the reason of the window open on scope now, or "".
func (c *Client) MaintenanceReason(scope string) string {
	w, _ := c.Maintenance(scope)
	return w.Reason
}

// IsMaintenance reports whether scope (or everything) is in maintenance now.
func (c *Client) IsMaintenance(scope string) bool {
	_, ok := c.Maintenance(scope)
	return ok
}

// InstanceReport is what this client reports to the instance registry
// (leases.Register): the revision applied, the values refused, the keys
// waiting for a restart and the keys it reads.
func (c *Client) InstanceReport() kv.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The revision of the last change applied, not of the last progress
	// notification: those move with every write anywhere in etcd (the
	// registry's own reports among them), and would rewrite the report
	// every few seconds for nothing.
	r := kv.Report{Applied: c.changed}
	if c.ownSchema {
		r.Reads = c.sch.Load().KeyNames()
	}
	for _, j := range c.rejected {
		r.Rejected = append(r.Rejected, kv.Rejection{Key: j.Key, Revision: j.Revision, Reason: j.Reason})
	}
	sort.Slice(r.Rejected, func(i, j int) bool { return r.Rejected[i].Key < r.Rejected[j].Key })
	for k := range c.pending {
		r.Pending = append(r.Pending, k)
	}
	sort.Strings(r.Pending)
	return r
}

// Subscription is a registered handler: pass it to Unsubscribe.
type Subscription struct {
	c   *Client
	sub *sub
}

// HasSynced reports whether the client has listed the cluster and the
// handler has been given every batch dispatched to it so far.
func (s *Subscription) HasSynced() bool { return s.c.synced.Load() && s.sub.idle() }

// Pattern is the pattern the handler was registered with.
func (s *Subscription) Pattern() string { return s.sub.pat.String() }

// Subscribe registers h for changes to keys that match pattern: "*" every
// key, "session.*" every key under "session.", anything else one key.
// Subscribing costs no goroutine and no etcd watch.
func (c *Client) Subscribe(pattern string, h Handler) *Subscription {
	return &Subscription{c: c, sub: c.mux.add(parsePattern(pattern), h)}
}

// Unsubscribe removes a subscription; it reports whether it was registered.
// A call in progress finishes; no call starts after Unsubscribe returns.
func (c *Client) Unsubscribe(s *Subscription) bool { return c.mux.remove(s.sub) }

// Subscribers returns the patterns of the subscriptions that receive key's changes.
func (c *Client) Subscribers(key string) []string { return c.mux.subscribers(key) }

// Stats describes the cache (the seed design's CacheStats).
type Stats struct {
	Hits, Misses, Evictions uint64
	HitRate                 float64
	Keys                    int
	MemoryBytes             int // approximate: keys, values and entry overhead
	Revision                int64
	Staleness               time.Duration
	Subscribers             int
	Rejected                int
}

// Stats returns the cache statistics.
func (c *Client) Stats() Stats {
	s := Stats{Hits: c.cache.hits.load(), Misses: c.cache.misses.Load(), Evictions: c.cache.evictions.Load(),
		Keys: c.cache.len(), Revision: c.Revision(), Staleness: c.Staleness()}
	if t := s.Hits + s.Misses; t > 0 {
		s.HitRate = float64(s.Hits) / float64(t)
	}
	for k, e := range *c.cache.read.Load() {
		b, _ := json.Marshal(schema.Encode(e.val.Value))
		s.MemoryBytes += len(k) + len(b) + 200
	}
	c.mux.mu.RLock()
	s.Subscribers = c.mux.count
	c.mux.mu.RUnlock()
	c.mu.Lock()
	s.Rejected = len(c.rejected)
	c.mu.Unlock()
	return s
}

// housekeeping sweeps the cache every second and writes the snapshot when
// values changed (at most once a second).
func (c *Client) housekeeping(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.snapDirty:
			dirty = true
		case now := <-t.C:
			c.cache.sweep(now)
			if dirty && c.opt.snapshot != "" {
				if err := c.writeSnapshot(); err != nil {
					c.log.Warn("snapshot", zap.Error(err))
				} else {
					dirty = false
				}
			}
		}
	}
}

func (c *Client) markDirty() {
	select {
	case c.snapDirty <- struct{}{}:
	default:
	}
}

func (o options) ttlFor(t schema.Type) time.Duration {
	if d, ok := o.typeTTL[t]; ok {
		return d
	}
	return o.ttl
}

// options configure a Client.
type options struct {
	prefix       string
	log          *zap.Logger
	reg          prometheus.Registerer
	schema       *schema.Schema
	cacheSize    int
	ttl          time.Duration
	typeTTL      map[schema.Type]time.Duration
	snapshot     string
	envPrefix    string
	workers      int
	queueSize    int
	slow         time.Duration
	progress     time.Duration
	startTimeout time.Duration
	mirror       bool
}

func defaultOptions() options {
	return options{prefix: kv.DefaultPrefix, log: zap.NewNop(), cacheSize: 1000, ttl: 300 * time.Second,
		typeTTL: map[schema.Type]time.Duration{}, envPrefix: "CFG_", workers: 8, queueSize: 256,
		slow: time.Second, progress: 2 * time.Second, startTimeout: 5 * time.Second}
}

// Option configures a Client.
type Option func(*options)

// WithPrefix sets the etcd prefix (default kv.DefaultPrefix).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithLogger sets the logger.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the client's Prometheus metrics.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithSchema makes the client check every value against the service's own
// schema instead of the cluster's: a value that fails it is rejected, logged
// and counted, and the last valid value is kept.
func WithSchema(s *schema.Schema) Option { return func(o *options) { o.schema = s } }

// WithCacheSize bounds the cache (default 1,000 entries).
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = max(n, 1) } }

// WithTTL sets how long a cached value is trusted before it is re-read on
// its next access (default 300 s); the watch refreshes values on change
// regardless.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithTypeTTL sets the TTL of one type's values.
func WithTypeTTL(t schema.Type, d time.Duration) Option { return func(o *options) { o.typeTTL[t] = d } }

// WithSnapshotFile keeps the last-known values in path, written atomically
// when they change and loaded at start when etcd cannot be reached.
func WithSnapshotFile(path string) Option { return func(o *options) { o.snapshot = path } }

// WithEnvPrefix sets the environment override prefix (default "CFG_").
func WithEnvPrefix(p string) Option { return func(o *options) { o.envPrefix = p } }

// WithWorkers sets the number of workers delivering to subscribers (default 8).
func WithWorkers(n int) Option { return func(o *options) { o.workers = max(n, 1) } }

// WithQueueSize bounds each subscriber's queue, in batches (default 256).
func WithQueueSize(n int) Option { return func(o *options) { o.queueSize = max(n, 1) } }

// WithSlowThreshold sets how long a handler call may take before it counts
// as a failure for its circuit breaker (default 1 s).
func WithSlowThreshold(d time.Duration) Option { return func(o *options) { o.slow = d } }

// WithProgressInterval sets how often the client asks etcd to confirm its
// revision (default 2 s); with no answer for three intervals the watch is
// deemed stuck and restarted on another member.
func WithProgressInterval(d time.Duration) Option { return func(o *options) { o.progress = d } }

// WithMirror is for servers that re-serve the configuration, as cfgnode
// does: no environment overrides and no restart tracking, so every value is
// the cluster's.
func WithMirror() Option { return func(o *options) { o.mirror = true } }

// WithStartTimeout bounds the first list (default 5 s) before New falls back
// to the snapshot.
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

package watch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/flags"
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
	flags     atomic.Pointer[flags.Set] // the feature flags, compiled (flags.go)

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
	revCh     chan struct{}           // closed and replaced whenever rev advances
	windows   map[string]*kv.Window   // maintenance windows by scope, as stored
	usage     map[string]kv.FlagUsage // the flags' usage as last reported
	usageAt   time.Time               // when it was taken

	synced    atomic.Bool
	listed    atomic.Bool   // a list has succeeded once: every later one is a re-list
	attempts  atomic.Uint64 // watch streams opened
	confirmed atomic.Int64  // unix nanos when etcd last confirmed the revision
	clusterID atomic.Uint64 // etcd's cluster id at the last list
	snapDirty chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	done   chan struct{} // closed by Close: wakes WaitRevision
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
	if o.keyring != nil {
		c.layout = c.layout.WithOpener(o.keyring)
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

// Subscription is a registered handler: pass it to Unsubscribe.
type Subscription struct {
	c   *Client
	sub *sub
}

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

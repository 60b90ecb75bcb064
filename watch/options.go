package watch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/seal"
)

func (o options) ttlFor(t schema.Type) time.Duration {
	if d, ok := o.typeTTL[t]; ok {
		return d
	}
	return o.ttl
}

// options configure a Client.
type options struct {
	prefix       string
	keyring      seal.Opener
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
	// usageInterval is how often the instance report's flag usage is taken.
	usageInterval time.Duration
}

func defaultOptions() options {
	return options{prefix: kv.DefaultPrefix, log: zap.NewNop(), cacheSize: 1000, ttl: 300 * time.Second,
		typeTTL: map[schema.Type]time.Duration{}, envPrefix: "CFG_", workers: 8, queueSize: 256,
		slow: time.Second, progress: 2 * time.Second, startTimeout: 5 * time.Second, usageInterval: time.Minute}
}

// WithFlagUsageInterval sets how often the instance report takes the
// flags' usage anew (default a minute).
func WithFlagUsageInterval(d time.Duration) Option { return func(o *options) { o.usageInterval = d } }

// Option configures a Client.
type Option func(*options)

// WithPrefix sets the etcd prefix (default kv.DefaultPrefix).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithKeyring gives the client the data keys that open the sensitive
// values it may read (cfgadm keys export --prefix P writes them). A value
// sealed with a key it lacks reads as a cfgerr Sealed error, in Lookup and
// in its events (Event.Err), and its default is never served in its place;
// the typed getters (String, Int…) answer their own def argument then, as
// for any error, so read sensitive keys with Lookup.
func WithKeyring(r seal.Opener) Option { return func(o *options) { o.keyring = r } }

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

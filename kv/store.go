package kv

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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
	// keys seals and opens sensitive values (WithProvider); nil: none.
	keys *dataKeys
	// index picks the keys of the audit trail's pages (WithAuditIndex).
	index *AuditIndex
	// proposalTTL is how long a proposal waits for its approvals.
	proposalTTL time.Duration

	// seen caches the last known state of the keys changes read and wrote
	// (etcd key → kv; ModRevision 0 for an absent key). A change reads from
	// it without a round trip; the commit's compares catch anything stale,
	// and a failed commit's Else branch brings the fresh state back in the
	// same round trip, as etcd's STM and leasing cache do.
	mu     sync.Mutex
	seen   map[string]seenKV
	warmed bool // the schema has been read once: its compare guards it since
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

// WithProposalTTL sets how long a proposal waits for approval (default
// DefaultProposalTTL).
func WithProposalTTL(d time.Duration) Option { return func(s *Store) { s.proposalTTL = d } }

// WithAuditIndex reads the audit trail through ix, which its owner runs.
func WithAuditIndex(ix *AuditIndex) Option { return func(s *Store) { s.index = ix } }

// New returns a Store over an etcd KV (a client, or a namespace.NewKV wrapper).
func New(kv clientv3.KV, opts ...Option) *Store {
	past, _ := lru.New[int64, *schema.Schema](pastSchemas)
	s := &Store{kv: kv, layout: NewLayout(""), log: zap.NewNop(), maxRetries: DefaultMaxRetries, now: time.Now, proposalTTL: DefaultProposalTTL,
		seen: map[string]seenKV{}, past: past}
	for _, o := range opts {
		o(s)
	}
	if s.keys != nil {
		s.keys.layout, s.keys.kv = s.layout, kv
		s.layout = s.layout.WithOpener(s.keys)
	}
	s.schema.Store(&loadedSchema{schema: emptySchema()})
	return s
}

// Layout returns the store's key layout.
func (s *Store) Layout() Layout { return s.layout }

// Meta describes a change for its audit record.
type Meta struct {
	Actor   string
	Comment string
	Action  string // one of the Action constants
	DryRun  bool   // validate and report, write nothing
	// A change of keys that need approval is stored as a proposal; with
	// NoPropose it is refused instead, and with Force (break-glass, for
	// admins: the caller checks) it applies at once, marked forced.
	NoPropose bool
	Force     bool
	// proposal is set when the change is a proposal's, applied by its
	// last approval: it is written as applied in the same transaction.
	proposal *Proposal
}

// Result is what a change did.
type Result struct {
	Revision int64    `json:"revision"` // the change's revision; 0 for a dry run or when nothing changed
	Changes  []Change `json:"changes"`
	// Unchanged are keys the change asked to delete that had no value: done
	// already, so not written and not in the audit record.
	Unchanged []string `json:"unchanged,omitempty"`
	DryRun    bool     `json:"dry_run,omitempty"`
	// Proposal is set when the change needs approval: it was stored as
	// this proposal, and nothing else was written.
	Proposal *Proposal `json:"proposal,omitempty"`
	// Forced is set when keys that need approval were changed without it
	// (Meta.Force): a critical change, counted and logged as such.
	Forced bool `json:"forced,omitempty"`
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
		} else if res.Proposal != nil {
			outcome = "proposed"
		} else if res.Forced {
			outcome = "forced"
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
		} else if res, ok, err = tx.commit(meta); ok {
			return res, nil
		} else if err != nil {
			// A member without a leader refuses before proposing: the
			// change was not made, and a retry may find a leader.
			if !errors.Is(err, rpctypes.ErrNoLeader) || attempt+1 >= s.maxRetries {
				return nil, err
			}
		} else if s.metrics != nil {
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

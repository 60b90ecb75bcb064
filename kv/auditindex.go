package kv

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// AuditIndex keeps, in memory, the revision order of the audit trail: every
// record's and every index entry's etcd key with its revision (auditRev), loaded
// once (keys only) and kept current by one etcd watch of the trail's range.
//
// etcd answers a range sorted by revision, or bounded by one, by reading
// every key of the range and sorting them: a page of the trail newest first
// read the whole trail (tens of MB at the default retention), and a page of
// a hot key's history every entry of it. With the index a page reads just
// its own keys. A Store given one (WithAuditIndex) uses it for every read of
// the trail; the index answers only once it is current up to a revision
// read after the request began, so a page never misses a record committed
// before it was asked for, and when it cannot be (its watch has fallen
// behind, or is cut off) the store reads etcd the slow way.
//
// Its memory is about 130 bytes per record and per index entry: 26 MiB for
// the default retention of 100,000 records of one key each, loaded in about
// a second (BenchmarkAuditRead).
type AuditIndex struct {
	etcd   *clientv3.Client
	layout Layout
	log    *zap.Logger

	mu      sync.Mutex
	rev     int64         // everything up to rev is indexed; 0: not loaded
	changed chan struct{} // closed (and replaced) when rev moves on
	wctx    context.Context
	asked   time.Time // a progress request unanswered since; zero when none
	trail   postings
	recRev  map[string]int64     // record id → its revision
	keys    map[string]*postings // changed key → its index entries
}

// posting is one record or index entry: its record's id and mod revision.
type posting struct {
	rev  int64
	id   string
	dead bool // deleted; dropped when a list compacts
}

// postings are in revision order; deletions mark entries dead.
type postings struct {
	list []posting
	dead int
}

func (p *postings) add(rev int64, id string) { p.list = append(p.list, posting{rev: rev, id: id}) }

func (p *postings) kill(i int) {
	p.list[i].dead = true
	if p.dead++; p.dead > 32 && p.dead*2 > len(p.list) {
		p.list = slices.DeleteFunc(p.list, func(x posting) bool { return x.dead })
		p.dead = 0
	}
}

// newest returns the live postings older than before (0: all), newest
// first, at most n.
func (p *postings) newest(before int64, n int) []posting {
	i := len(p.list)
	if before > 0 {
		i = sort.Search(len(p.list), func(i int) bool { return p.list[i].rev >= before })
	}
	var out []posting
	for ; i > 0 && len(out) < n; i-- {
		if x := p.list[i-1]; !x.dead {
			out = append(out, x)
		}
	}
	return out
}

// NewAuditIndex returns an index of the trail under layout; Run fills it.
func NewAuditIndex(etcd *clientv3.Client, layout Layout, log *zap.Logger) *AuditIndex {
	return &AuditIndex{etcd: etcd, layout: layout, log: log, changed: make(chan struct{})}
}

// Run loads the index and keeps it current until ctx ends. After an error
// it watches again from where it was; after a compaction that its watch
// fell behind, it loads again.
func (ix *AuditIndex) Run(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		from := ix.Revision()
		if from == 0 {
			rev, err := ix.load(ctx)
			if err != nil {
				if ctx.Err() == nil {
					ix.log.Warn("loading the audit trail's index failed; reads of the trail go to etcd until it loads", zap.Error(err))
				}
				sleep(ctx, time.Second)
				continue
			}
			from = rev
		}
		// Its own metadata puts the watch on a gRPC stream of its own, so
		// progress requests reach it and a replacement never joins a
		// stalled stream.
		wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx),
			"cfgcluster-audit-index", strconv.Itoa(attempt)))
		err := ix.watch(wctx, from)
		cancel()
		if errors.Is(err, rpctypes.ErrCompacted) {
			ix.mu.Lock()
			ix.rev = 0 // load again
			ix.mu.Unlock()
		}
		if ctx.Err() == nil {
			ix.log.Debug("the audit trail's watch stopped; watching again", zap.Error(err))
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Revision is the revision the index is current up to: 0 until it has
// loaded the trail.
func (ix *AuditIndex) Revision() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.rev
}

// indexLoadPage is how many keys a page of the load reads.
const indexLoadPage = 10000

// load reads every key of the trail's range, keys only, in key order (a
// page at a time, which etcd reads as just that page), at one revision.
func (ix *AuditIndex) load(ctx context.Context) (int64, error) {
	start := ix.layout.prefix + "v1/audit"
	end := clientv3.GetPrefixRangeEnd(start)
	trail, recRev, keys := postings{}, map[string]int64{}, map[string]*postings{}
	var rev int64
	for key := start; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(indexLoadPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := ix.etcd.Get(ctx, key, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if id, ok := strings.CutPrefix(string(kv.Key), ix.layout.AuditPrefix()); ok {
				trail.add(auditRev(kv), id)
				recRev[id] = auditRev(kv)
			} else if k, id, ok := ix.entryOf(string(kv.Key)); ok {
				if keys[k] == nil {
					keys[k] = &postings{}
				}
				keys[k].add(auditRev(kv), id)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	byRev := func(a, b posting) int { return cmp.Compare(a.rev, b.rev) }
	slices.SortStableFunc(trail.list, byRev)
	for _, p := range keys {
		slices.SortStableFunc(p.list, byRev)
	}
	ix.mu.Lock()
	ix.trail, ix.recRev, ix.keys = trail, recRev, keys
	ix.setRevLocked(rev)
	ix.mu.Unlock()
	ix.log.Info("audit trail indexed", zap.Int("records", len(recRev)), zap.Int("keys", len(keys)), zap.Int64("revision", rev))
	return rev, nil
}

// entryOf splits an index entry's etcd key into the changed key and the
// record's id.
func (ix *AuditIndex) entryOf(etcdKey string) (key, id string, ok bool) {
	rest, ok := strings.CutPrefix(etcdKey, ix.layout.AuditKeysPrefix())
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}

// watchSilence is how long a progress request may go unanswered before the
// watch is replaced.
const watchSilence = 3 * time.Second

// watch applies the trail's changes after revision from until the watch
// fails or goes silent.
func (ix *AuditIndex) watch(ctx context.Context, from int64) error {
	// From the indexed revision itself, not the next: etcd answers no
	// progress request of a watch from a revision it has not reached.
	// Events at it, if any come again, are skipped by apply.
	ch := ix.etcd.Watch(ctx, ix.layout.prefix+"v1/audit", clientv3.WithPrefix(), clientv3.WithRev(from))
	ix.mu.Lock()
	ix.wctx, ix.asked = ctx, time.Time{}
	ix.mu.Unlock()
	defer func() {
		ix.mu.Lock()
		ix.wctx = nil
		ix.mu.Unlock()
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			ix.mu.Lock()
			asked := ix.asked
			ix.mu.Unlock()
			if !asked.IsZero() && time.Since(asked) > watchSilence {
				return errors.New("progress requests went unanswered")
			}
		case resp, ok := <-ch:
			if !ok {
				return errors.New("closed")
			}
			if err := resp.Err(); err != nil {
				return err
			}
			ix.apply(resp)
		}
	}
}

func (ix *AuditIndex) apply(resp clientv3.WatchResponse) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.asked = time.Time{} // the watch answers
	rev := ix.rev
	for _, ev := range resp.Events {
		key := string(ev.Kv.Key)
		if ev.Kv.ModRevision <= ix.rev {
			continue
		}
		rev = ev.Kv.ModRevision
		if ev.Type == clientv3.EventTypePut && ev.Kv.Version > 1 {
			continue // re-sealed in place: its revision (its creation's) and place are the same
		}
		r := auditRev(ev.Kv)
		if id, ok := strings.CutPrefix(key, ix.layout.AuditPrefix()); ok {
			if old, ok := ix.recRev[id]; ok {
				ix.trail.killAt(old, id)
				delete(ix.recRev, id)
			}
			if ev.Type == clientv3.EventTypePut {
				ix.trail.add(r, id)
				ix.recRev[id] = r
			}
			continue
		}
		k, id, ok := ix.entryOf(key)
		if !ok {
			continue
		}
		p := ix.keys[k]
		if ev.Type == clientv3.EventTypeDelete {
			if p != nil {
				p.killID(id)
				if len(p.list) == p.dead {
					delete(ix.keys, k)
				}
			}
			continue
		}
		if p == nil {
			p = &postings{}
			ix.keys[k] = p
		}
		p.add(r, id)
	}
	// A progress notice is sent only once the watch has sent everything up
	// to its revision; an event response's header may run ahead of what
	// is still to come, so only its events count.
	if resp.IsProgressNotify() {
		rev = max(rev, resp.Header.Revision)
	}
	ix.setRevLocked(rev)
}

// killAt marks dead the posting of record id at revision rev.
func (p *postings) killAt(rev int64, id string) {
	for i := sort.Search(len(p.list), func(i int) bool { return p.list[i].rev >= rev }); i < len(p.list) && p.list[i].rev == rev; i++ {
		if p.list[i].id == id && !p.list[i].dead {
			p.kill(i)
			return
		}
	}
}

// killID marks dead the oldest live posting of id: entries are pruned
// oldest first, so it is near the front.
func (p *postings) killID(id string) {
	for i := range p.list {
		if p.list[i].id == id && !p.list[i].dead {
			p.kill(i)
			return
		}
	}
}

func (ix *AuditIndex) setRevLocked(rev int64) {
	if rev > ix.rev {
		ix.rev = rev
		close(ix.changed)
		ix.changed = make(chan struct{})
	}
}

// freshWait is how long a read waits for the index to catch up before it
// reads etcd instead.
const freshWait = 2 * time.Second

// waitFor reports whether the index is current up to rev, asking the watch
// for a progress notice (which etcd sends once the watch has caught up)
// until it is, or until freshWait has passed.
func (ix *AuditIndex) waitFor(ctx context.Context, rev int64) bool {
	deadline := time.NewTimer(freshWait)
	defer deadline.Stop()
	for {
		ix.mu.Lock()
		cur, changed, wctx := ix.rev, ix.changed, ix.wctx
		if cur < rev && wctx != nil && ix.asked.IsZero() {
			ix.asked = time.Now()
		}
		ix.mu.Unlock()
		if cur >= rev {
			return true
		}
		if wctx != nil {
			_ = ix.etcd.RequestProgress(wctx) // a failure shows as silence
		}
		retry := time.NewTimer(50 * time.Millisecond)
		select {
		case <-changed:
		case <-retry.C:
		case <-deadline.C:
			retry.Stop()
			return false
		case <-ctx.Done():
			retry.Stop()
			return false
		}
		retry.Stop()
	}
}

// page returns the etcd keys under prefix (the trail, one key's index
// entries, or those of every key that starts with a prefix) with a
// revision older than before (0: any), newest first, at most n, as etcd's
// sorted read of a page would. ok is false when prefix is not one the
// index keeps.
func (ix *AuditIndex) page(prefix string, before int64, n int) (keys []string, revs []int64, ok bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var ps []posting
	var names []string // the changed key of each posting of ps (index entries)
	switch {
	case prefix == ix.layout.AuditPrefix():
		ps = ix.trail.newest(before, n)
		for _, p := range ps {
			keys, revs = append(keys, prefix+p.id), append(revs, p.rev)
		}
		return keys, revs, true
	case strings.HasPrefix(prefix, ix.layout.AuditKeysPrefix()):
		rest := prefix[len(ix.layout.AuditKeysPrefix()):]
		if k, exact := strings.CutSuffix(rest, ":"); exact {
			if p := ix.keys[k]; p != nil {
				ps = p.newest(before, n)
			}
			for range ps {
				names = append(names, k)
			}
			break
		}
		type named struct {
			posting
			key string
		}
		var all []named
		for k, p := range ix.keys {
			if strings.HasPrefix(k, rest) {
				for _, x := range p.newest(before, n) {
					all = append(all, named{x, k})
				}
			}
		}
		slices.SortFunc(all, func(a, b named) int { return cmp.Compare(b.rev, a.rev) })
		for _, x := range all[:min(n, len(all))] {
			ps, names = append(ps, x.posting), append(names, x.key)
		}
	default:
		return nil, nil, false
	}
	for i, p := range ps {
		keys, revs = append(keys, ix.layout.auditKeyEntry(names[i], p.id)), append(revs, p.rev)
	}
	return keys, revs, true
}

package watch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

// list reads the whole client range at one revision and applies the
// difference from what the client held as one batch (a re-list after
// compaction, an outage or Refresh emits exactly what changed, deletes
// included). It returns the list's revision.
func (c *Client) list(ctx context.Context) (int64, error) {
	// The read happens under applyMu: a change the watch applied between
	// the read and its application would otherwise be overwritten by the
	// older listing (and sent to subscribers as if it were new).
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	kvs, hdr, err := c.listRange(ctx)
	if err != nil {
		return 0, err
	}
	c.met.relists.Inc()
	rev := hdr.Revision
	c.clusterID.Store(hdr.ClusterId)

	c.mu.Lock()
	listed := map[string]*mvccpb.KeyValue{}
	var schemaKV *mvccpb.KeyValue
	windows := map[string]*kv.Window{}
	for _, kvp := range kvs {
		if string(kvp.Key) == c.layout.SchemaKey() {
			schemaKV = kvp
		} else if key, ok := c.layout.KeyOf(string(kvp.Key)); ok {
			listed[key] = kvp
		} else if scope, ok := strings.CutPrefix(string(kvp.Key), c.layout.MaintenancePrefix()); ok {
			if w, err := kv.DecodeWindow(kvp.Value); err == nil {
				windows[scope] = w
			}
		}
	}
	c.windows = windows
	schemaChanged := c.takeSchemaLocked(schemaKV)
	// The differences, as watch events would have carried them.
	var evs []*clientv3.Event
	for key, kvp := range listed {
		if old, ok := c.raw[key]; !ok || old.kv.ModRevision != kvp.ModRevision {
			evs = append(evs, &clientv3.Event{Type: clientv3.EventTypePut, Kv: kvp})
		}
	}
	for key, old := range c.raw {
		if _, ok := listed[key]; !ok {
			evs = append(evs, &clientv3.Event{Type: clientv3.EventTypeDelete, Kv: &mvccpb.KeyValue{Key: old.kv.Key, ModRevision: rev}})
		}
	}
	sort.Slice(evs, func(i, j int) bool { return string(evs[i].Kv.Key) < string(evs[j].Kv.Key) })
	fromSnapshot := c.from == SourceSnapshot
	c.from = SourceCluster
	// A re-list tells every subscriber to resync: it coalesced what it
	// missed into one diff batch. Only the very first list does not,
	// even when a re-list failed and the client counts as unsynced.
	wasSynced := c.synced.Swap(true)
	relisted := c.listed.Swap(true)
	c.mu.Unlock()
	if fromSnapshot || schemaChanged || !wasSynced {
		c.cache.clear() // nothing served before the first list (marked stale) stays
	}
	c.applyLocked(rev, evs, true)
	if relisted || fromSnapshot {
		c.mux.resyncAll(rev)
	}
	return rev, nil
}

// listPage is how many keys one range of a list reads: a list of any size
// is read in pages at one revision, so no answer outgrows gRPC's limits.
const listPage = 1000

// listRange reads the whole client range at one revision, a page at a time.
func (c *Client) listRange(ctx context.Context) ([]*mvccpb.KeyValue, *etcdserverpb.ResponseHeader, error) {
	start, end := c.layout.ClientRange()
	var (
		out []*mvccpb.KeyValue
		hdr *etcdserverpb.ResponseHeader
	)
	for from := start; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if hdr != nil {
			opts = append(opts, clientv3.WithRev(hdr.Revision))
		}
		resp, err := c.etcd.Get(ctx, from, opts...)
		if err != nil {
			return nil, nil, err // compacted between pages too: the caller lists again
		}
		if hdr == nil {
			hdr = resp.Header
		}
		out = append(out, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			return out, hdr, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// takeSchemaLocked adopts the cluster's schema, unless the service gave its
// own. It reports whether the schema changed.
func (c *Client) takeSchemaLocked(kvp *mvccpb.KeyValue) bool {
	if c.ownSchema || kvp == nil || kvp.ModRevision == c.schemaRev {
		return false
	}
	sch, err := schema.Parse(kvp.Value)
	if err != nil {
		c.log.Error("the cluster's schema does not parse; keeping the previous one", zap.Int64("revision", kvp.ModRevision), zap.Error(err))
		return false
	}
	c.sch.Store(sch)
	c.schemaRev, c.schemaDoc = kvp.ModRevision, kvp.Value
	c.retypeLocked()
	return true
}

// retypeLocked checks every held value against a new schema; a value that
// no longer fits is rejected, and read as it was stored.
func (c *Client) retypeLocked() {
	sch := c.sch.Load()
	for key, h := range c.raw {
		if _, err := c.layout.Decode(sch, h.kv); err != nil && cfgerr.CodeOf(err) != cfgerr.Sealed {
			c.rejected[key] = Rejection{Key: key, Revision: h.kv.ModRevision, Reason: err.Error(), Time: time.Now()}
			c.met.rejected.Inc()
		}
	}
}

// apply applies one revision's events from the watch.
func (c *Client) apply(rev int64, evs []*clientv3.Event) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.applyLocked(rev, evs, false)
}

// applyLocked updates the state and the cache, then hands the batch to the
// subscribers: the cache is current before any handler runs. Revisions only
// go forward: a revision at or below the applied one is a duplicate and
// dropped (a list applies its own revision whatever the watch has seen).
func (c *Client) applyLocked(rev int64, evs []*clientv3.Event, list bool) {
	now := time.Now()
	c.mu.Lock()
	if !list && rev <= c.rev {
		c.mu.Unlock()
		return
	}
	sch := c.sch.Load()
	var (
		batch   []Event
		flagged []string // keys of the flags namespace changed
		retyped = list   // every value decoded again: the flags are compiled again
		puts    []*entry
		removes []string
		cached  = *c.cache.read.Load()
		change  kv.ChangeMeta // who made the revision's change: for its deletes
	)
	if !list {
		for _, ev := range evs {
			if string(ev.Kv.Key) == c.layout.LastChangeKey() && ev.Type == clientv3.EventTypePut {
				change, _ = kv.DecodeChangeMeta(ev.Kv.Value)
			}
		}
	}
	for _, ev := range evs {
		ek := string(ev.Kv.Key)
		if ek == c.layout.SchemaKey() {
			if ev.Type == clientv3.EventTypePut && c.takeSchemaLocked(ev.Kv) {
				sch = c.sch.Load()
				cached = nil
				c.cache.clear()
				retyped = true
			}
			continue
		}
		if scope, ok := strings.CutPrefix(ek, c.layout.MaintenancePrefix()); ok {
			c.applyWindowLocked(scope, ev)
			continue
		}
		key, ok := c.layout.KeyOf(ek)
		if !ok {
			continue // another area of the range (scheduled windows, proposals)
		}
		old, had := c.currentLocked(key)
		var e Event
		if ev.Type == clientv3.EventTypePut {
			dec, err := c.layout.Decode(sch, ev.Kv)
			switch {
			case cfgerr.CodeOf(err) == cfgerr.Sealed:
				// Held as it is: a read says it is sealed, and never
				// answers the default instead.
				delete(c.rejected, key)
				c.raw[key] = held{ev.Kv}
				c.met.sealed.Inc()
				c.log.Error("cannot open a sealed value: reads of it fail until the client has its key (WithKeyring)",
					zap.String("key", key), zap.Int64("revision", ev.Kv.ModRevision), zap.Error(err))
				e = Event{Kind: Put, Key: key, Old: old.Value, Err: err, Source: SourceCluster, Revision: ev.Kv.ModRevision}
			case err != nil:
				c.rejected[key] = Rejection{Key: key, Revision: ev.Kv.ModRevision, Reason: err.Error(), Time: now}
				c.met.rejected.Inc()
				c.log.Error("rejected a cluster value; keeping the last valid one", zap.String("key", key),
					zap.Int64("revision", ev.Kv.ModRevision), zap.Error(err))
				continue
			default:
				delete(c.rejected, key)
				c.raw[key] = held{ev.Kv}
				e = Event{Kind: Put, Key: key, Old: old.Value, New: dec.Value, Source: SourceCluster, Time: dec.Time, Actor: dec.Actor,
					Comment: dec.Comment, Revision: ev.Kv.ModRevision}
				if !list && !dec.Time.IsZero() {
					c.met.propagation.Observe(now.Sub(dec.Time).Seconds())
				}
			}
			if had {
				e.Kind = Update
			}
		} else {
			if _, stored := c.raw[key]; !stored {
				continue
			}
			delete(c.raw, key)
			delete(c.rejected, key)
			e = Event{Kind: Delete, Key: key, Old: old.Value, Source: SourceDefault, Revision: rev,
				Actor: change.Actor, Time: change.Time, Comment: change.Comment}
			if d, ok := c.defaultValue(key); ok {
				e.New = d.Value
			}
		}
		if isFlagKey(key) {
			flagged = append(flagged, key)
		}
		if _, env := c.env[key]; env {
			continue // the environment wins: nothing the service sees changed
		}
		if k, ok := sch.Lookup(key); ok && k.RequiresRestart {
			e.RequiresRestart = true
			// A value the client cannot open has changed all the same: it
			// waits for a restart too.
			if f, ok := c.frozen[key]; !ok || e.Err == nil && schema.Equal(f.Value, e.New) {
				delete(c.pending, key) // no start value yet (this is the start), or back to it
			} else {
				c.pending[key] = Value{Key: key, Value: e.New, Type: k.Type, Source: e.Source, RequiresRestart: true,
					Revision: e.Revision, LastUpdated: e.Time, Actor: e.Actor}
			}
		} else if _, ok := cached[key]; ok {
			// Proactive refresh: a cached key gets its new value now.
			if v, ok, err := c.resolveLocked(key); err != nil {
				removes = append(removes, key) // sealed: every read says so
			} else if ok {
				puts = append(puts, c.newEntry(v))
			} else if d, ok := c.defaultValue(key); ok {
				puts = append(puts, c.newEntry(d))
			} else {
				removes = append(removes, key)
			}
		}
		batch = append(batch, e)
	}
	// The cache holds the revision's values before the revision counts as
	// applied: WaitRevision's callers then read them. So do the flags.
	c.cache.update(puts, removes)
	if retyped || len(flagged) > 0 {
		c.updateFlagsLocked(flagged, retyped)
	}
	if list {
		c.resetLocked(rev)
		c.changed = rev
	} else {
		c.advanceLocked(rev)
		if len(evs) > 0 {
			c.changed = rev
		}
	}
	c.confirmed.Store(now.UnixNano())
	c.mu.Unlock()
	if len(batch) > 0 {
		c.mux.dispatch(Batch{Revision: rev, Events: batch})
	}
	if len(evs) > 0 {
		c.markDirty()
	}
}

// applyWindowLocked follows a maintenance window's key.
func (c *Client) applyWindowLocked(scope string, ev *clientv3.Event) {
	if ev.Type == clientv3.EventTypeDelete {
		delete(c.windows, scope)
		return
	}
	w, err := kv.DecodeWindow(ev.Kv.Value)
	if err != nil {
		c.log.Error("ignoring a corrupt maintenance window", zap.String("scope", scope), zap.Error(err))
		return
	}
	c.windows[scope] = w
}

// currentLocked is the key's value before a change: stored (decoded by the
// cache when it holds this version), else default.
func (c *Client) currentLocked(key string) (Value, bool) {
	if h, ok := c.raw[key]; ok {
		if en, ok := (*c.cache.read.Load())[key]; ok && en.val.Source == SourceCluster && en.val.Revision == h.kv.ModRevision {
			return en.val, true
		}
		if e, err := c.entryLocked(h); err == nil {
			return c.valueOf(e, SourceCluster), true
		}
		return Value{Key: key, Source: SourceCluster, Revision: h.kv.ModRevision}, true // sealed: no value to show
	}
	d, _ := c.defaultValue(key)
	return d, false
}

// watchLoop keeps one etcd watch open from the applied revision on, for the
// client's whole life: it resumes after errors, re-lists after compaction
// and moves off a member that stopped answering.
func (c *Client) watchLoop(ctx context.Context) {
	defer c.wg.Done()
	failures := 0
	for ctx.Err() == nil {
		if !c.synced.Load() {
			if _, err := c.list(ctx); err != nil {
				failures++
				c.log.Debug("list failed", zap.Error(err))
				c.sleep(ctx, failures)
				continue
			}
		}
		// From the applied revision itself, not the next: etcd answers no
		// progress request of a watch from a revision it has not reached
		// (mvcc's progressIfSync), so on an idle cluster a watch from the
		// next revision never heard progress, the client grew stale and
		// restarted its watch every three intervals. The applied revision's
		// events, if any come again, are dropped as duplicates.
		reason, err := c.watchOnce(ctx, c.Revision())
		if ctx.Err() != nil {
			return
		}
		if reason == "stuck" && c.wentBack(ctx) {
			// etcd sends no progress to a watch from a revision it has not
			// reached: the cluster was restored from an older snapshot.
			reason = "restored"
		}
		c.met.restarts.WithLabelValues(reason).Inc()
		c.log.Info("watch restarting", zap.String("reason", reason), zap.Int64("revision", c.Revision()), zap.Error(err))
		if reason == "compacted" || reason == "restored" {
			// Events were lost to compaction, or etcd was restored or
			// replaced: re-list and emit the difference.
			if _, err := c.list(ctx); err != nil {
				c.synced.Store(false)
			}
			failures = 0
			continue
		}
		if reason == "healthy" {
			failures = 0
		} else {
			failures++
		}
		c.sleep(ctx, failures)
	}
}

// sleep backs off by the square of the failures, with jitter, up to 1 s:
// a client must converge within a second of the cluster's return.
func (c *Client) sleep(ctx context.Context, failures int) {
	d := min(time.Duration(failures*failures)*50*time.Millisecond, time.Second)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// watchOnce runs one etcd watch until it fails, and says why.
func (c *Client) watchOnce(ctx context.Context, from int64) (reason string, err error) {
	// Each attempt gets its own gRPC stream (clientv3 shares a stream among
	// watches with the same metadata), so a restart after a stuck member
	// opens a new stream, which the balancer may place on another member.
	attempt := strconv.FormatUint(c.attempts.Add(1), 10)
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "cfgcluster-watch-attempt", attempt))
	defer cancel()
	start, end := c.layout.ClientRange()
	// Watch blocks until its stream is open; on a dead connection that can
	// take as long as gRPC's keepalive: give up after three intervals.
	giveUp := time.AfterFunc(3*c.opt.progress, cancel)
	// No previous values (WithPrevKV): the client's own state has them, and
	// etcd spends about 15% more CPU per event fetching them (issue 15).
	wch := c.etcd.Watch(wctx, start, clientv3.WithRange(end), clientv3.WithRev(from), clientv3.WithProgressNotify())
	if !giveUp.Stop() {
		return "stuck", errors.New("the watch stream did not open")
	}
	tick := time.NewTicker(c.opt.progress)
	defer tick.Stop()
	heard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return "closed", ctx.Err()
		case <-tick.C:
			if time.Since(heard) > 3*c.opt.progress {
				// No event and no answer to progress requests: the member is
				// cut off or stuck. A new stream may land on another member.
				return "stuck", errors.New("no progress notification from etcd")
			}
			// Same stream (the context carries its metadata), bounded wait.
			pctx, pcancel := context.WithTimeout(wctx, c.opt.progress)
			_ = c.etcd.RequestProgress(pctx)
			pcancel()
		case resp, ok := <-wch:
			if !ok {
				return "channel-closed", wctx.Err()
			}
			heard = time.Now()
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				return "compacted", resp.Err()
			}
			if err := resp.Err(); err != nil {
				return "error", err
			}
			if id := c.clusterID.Load(); id != 0 && resp.Header.ClusterId != 0 && resp.Header.ClusterId != id {
				return "restored", fmt.Errorf("etcd's cluster id changed from %x to %x", id, resp.Header.ClusterId)
			}
			if resp.IsProgressNotify() {
				if resp.Header.Revision < c.Revision() && c.wentBack(wctx) {
					// A watch from a revision etcd has not reached waits
					// silently: the cluster was restored from an older snapshot.
					return "restored", fmt.Errorf("etcd is at revision %d, behind the %d applied", resp.Header.Revision, c.Revision())
				}
				c.progress(resp.Header.Revision)
				continue
			}
			// One batch per revision: etcd never splits a revision across
			// responses (we do not ask for fragments), and orders them.
			for i := 0; i < len(resp.Events); {
				rev := resp.Events[i].Kv.ModRevision
				j := i + 1
				for j < len(resp.Events) && resp.Events[j].Kv.ModRevision == rev {
					j++
				}
				c.apply(rev, resp.Events[i:j])
				i = j
			}
		}
	}
}

// wentBack asks etcd, with a linearizable read, whether its revision is
// behind the client's (a progress notification from a lagging member is
// not enough to say so).
func (c *Client) wentBack(ctx context.Context) bool {
	start, end := c.layout.ClientRange()
	rctx, cancel := context.WithTimeout(ctx, c.opt.progress)
	defer cancel()
	resp, err := c.etcd.Get(rctx, start, clientv3.WithRange(end), clientv3.WithCountOnly())
	return err == nil && (resp.Header.Revision < c.Revision() || resp.Header.ClusterId != c.clusterID.Load())
}

// progress records etcd's confirmation that nothing in the range changed
// up to rev.
func (c *Client) progress(rev int64) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.mu.Lock()
	c.advanceLocked(rev)
	c.mu.Unlock()
	c.confirmed.Store(time.Now().UnixNano())
}

// resetLocked sets the applied revision to a list's: forward, or back when
// etcd's revision went back (restored from an older snapshot).
func (c *Client) resetLocked(rev int64) {
	if rev < c.rev {
		c.log.Warn("etcd's revision went back: the cluster was restored or replaced; following it",
			zap.Int64("was", c.rev), zap.Int64("now", rev))
		c.rev = rev
		return
	}
	c.advanceLocked(rev)
}

// advanceLocked moves the applied revision forward and wakes WaitRevision.
func (c *Client) advanceLocked(rev int64) {
	if rev > c.rev {
		c.rev = rev
		close(c.revCh)
		c.revCh = make(chan struct{})
	}
}

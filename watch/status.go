package watch

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"go.uber.org/zap"

	"cfgcluster/kv"
	"cfgcluster/schema"
)

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
	r.Flags = c.flagReportLocked(time.Now())
	return r
}

// flagReportLocked is the flags' usage for the instance report, taken anew
// at most once per flag-usage interval: the report is rewritten only when
// it changes, and counts change with every evaluation.
func (c *Client) flagReportLocked(now time.Time) map[string]kv.FlagUsage {
	if c.usageAt.IsZero() || now.Sub(c.usageAt) >= c.opt.usageInterval {
		prev := c.usage
		c.usage, c.usageAt = map[string]kv.FlagUsage{}, now
		for key, f := range c.Flags().Flags {
			u := kv.FlagUsage{Evaluations: f.Usage()}
			var total, before uint64
			for _, n := range u.Evaluations {
				total += n
			}
			for _, n := range prev[key].Evaluations {
				before += n
			}
			switch {
			case total == 0:
				continue
			case total != before:
				u.Last = now.UTC().Truncate(time.Second)
			default:
				u.Last = prev[key].Last
			}
			c.usage[key] = u
		}
	}
	if len(c.usage) == 0 {
		return nil
	}
	return c.usage
}

// HasSynced reports whether the client has listed the cluster and the
// handler has been given every batch dispatched to it so far.
func (s *Subscription) HasSynced() bool { return s.c.synced.Load() && s.sub.idle() }

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
	s := Stats{Hits: c.cache.hits.Load(), Misses: c.cache.misses.Load(), Evictions: c.cache.evictions.Load(),
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

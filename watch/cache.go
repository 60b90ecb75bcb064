package watch

import (
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"cfgcluster/internal/stripe"
)

// cache holds decoded values, bounded by a golang-lru cache.
//
// Reads on a hit take no lock: the entries are published as an immutable
// map behind an atomic pointer, rebuilt (copy on write) by the writers, who
// serialise on mu. Configuration changes are rare and reads are hot, so a
// write costs a map copy and a read costs a map lookup. Recency reaches the
// LRU in the background: a hit sets its entry's touched flag (a store only
// when it is not set yet, so hot keys cost no shared write), and the sweep
// promotes touched entries in the LRU once a second and drops expired ones.
type cache struct {
	read atomic.Pointer[map[string]*entry]

	mu  sync.Mutex // writers: lru and the published map
	lru *lru.Cache[string, *entry]

	hits      *stripe.Counter
	misses    atomic.Uint64
	evictions atomic.Uint64
	evicted   []string // keys the LRU evicted during the current write
}

// entry is one cached value. It is immutable once published, but for touched.
type entry struct {
	val     Value
	expires time.Time
	touched atomic.Bool
}

func newCache(size int) *cache {
	c := &cache{hits: stripe.New(64)}
	// The callback runs inside lru calls, which run under c.mu.
	c.lru, _ = lru.NewWithEvict(size, func(key string, _ *entry) { c.evicted = append(c.evicted, key) })
	empty := map[string]*entry{}
	c.read.Store(&empty)
	return c
}

// get returns the entry for key on a hit. It takes no lock and allocates nothing.
func (c *cache) get(key string) (*entry, bool) {
	e, ok := (*c.read.Load())[key]
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	if !e.touched.Load() {
		e.touched.Store(true)
	}
	c.hits.Inc()
	return e, true
}

// update applies puts and removals and publishes the result.
func (c *cache) update(puts []*entry, removes []string) {
	if len(puts) == 0 && len(removes) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.read.Load()
	next := make(map[string]*entry, len(cur)+len(puts))
	for k, e := range cur {
		next[k] = e
	}
	for _, k := range removes {
		c.lru.Remove(k)
		delete(next, k)
	}
	c.evicted = c.evicted[:0]
	for _, e := range puts {
		c.lru.Add(e.val.Key, e)
		next[e.val.Key] = e
	}
	c.evictions.Add(uint64(len(c.evicted))) // only Add evicts; removals above are not evictions
	for _, k := range c.evicted {
		if e, ok := c.lru.Peek(k); !ok || e != next[k] {
			delete(next, k)
		}
	}
	c.read.Store(&next)
}

// sweep promotes touched entries in the LRU and drops expired ones; the
// next read of an expired key refreshes it.
func (c *cache) sweep(now time.Time) {
	var expired []string
	for k, e := range *c.read.Load() {
		if !e.expires.IsZero() && now.After(e.expires) {
			expired = append(expired, k)
			continue
		}
		if e.touched.Load() {
			c.mu.Lock()
			c.lru.Get(k)
			c.mu.Unlock()
			e.touched.Store(false)
		}
	}
	c.update(nil, expired)
}

func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Purge()
	c.evicted = c.evicted[:0]
	empty := map[string]*entry{}
	c.read.Store(&empty)
}

func (c *cache) len() int { return len(*c.read.Load()) }

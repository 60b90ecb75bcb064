package watch

import (
	"sort"
	"time"
)

// Rejection is a cluster value that failed the client's schema.
type Rejection struct {
	Key      string
	Revision int64
	Reason   string
	Time     time.Time
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
		v, ok, err := c.resolveLocked(name)
		if err != nil {
			continue // sealed, and no key to open it: reads say so, nothing to freeze
		}
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

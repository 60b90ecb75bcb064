package watch

import (
	"encoding/json"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

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
	v, ok, err := c.resolveLocked(key)
	if err != nil {
		c.mu.Unlock()
		return Value{}, err // a sealed value: never a default in its place
	}
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
// An error is a held value sealed with a key the client lacks.
func (c *Client) resolveLocked(key string) (Value, bool, error) {
	if v, ok := c.env[key]; ok {
		return v, true, nil
	}
	if v, ok := c.frozen[key]; ok {
		return v, v.Value != nil, nil // nil: the key had no value at start, and keeps none
	}
	if h, ok := c.raw[key]; ok {
		e, err := c.entryLocked(h)
		if err != nil {
			return Value{}, false, err
		}
		return c.valueOf(e, c.from), true, nil
	}
	return Value{}, false, nil
}

// entryLocked decodes a held value: by the client's schema, or, for a value
// a newer schema refuses (rejected, and kept), as it was stored. Its only
// error is a Sealed one: a value sealed with a key the client lacks (see
// WithKeyring).
func (c *Client) entryLocked(h held) (*kv.Entry, error) {
	e, err := c.layout.Decode(c.sch.Load(), h.kv)
	if err != nil && cfgerr.CodeOf(err) != cfgerr.Sealed {
		e, err = c.layout.Decode(nil, h.kv) // checked when it was applied: it decodes
	}
	return e, err
}

// held is a stored value as etcd gave it: its envelope, encoded. The state
// keeps every value of the range this compact way; decoded values live in
// the cache, which bounds them (WithCacheSize), and a miss decodes again.
// 100,000 values of 1 KiB of JSON: 436 MiB held decoded, about a third of
// it encoded (docs/BENCHMARKS.md).
type held struct {
	kv *mvccpb.KeyValue
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

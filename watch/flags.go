package watch

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"go.uber.org/zap"

	"cfgcluster/flags"
	"cfgcluster/schema"
)

// Feature flags are values under schema.FlagsNamespace ("flags.KEY"), in
// flagd's format, with what they share in the key "flags". The client
// compiles a flag's targeting once per change of it (all of them when the
// shared part changes), and evaluates from memory: no etcd read, no JSON
// decoding, no JsonLogic interpretation per call.

// updateFlagsLocked brings the compiled flags up to date with the keys
// changed (all: every flag, after a list or a schema change).
func (c *Client) updateFlagsLocked(changed []string, all bool) {
	old := c.flags.Load()
	if !all && old != nil && !slices.Contains(changed, schema.FlagsNamespace) {
		defs := map[string]*flags.Definition{}
		for _, key := range changed {
			if fk, ok := schema.FlagKeyOf(key); ok {
				defs[fk] = c.flagDefLocked(key)
			}
		}
		if len(defs) > 0 {
			next := old.Update(defs)
			next.KeepUsage(old)
			c.flags.Store(next)
		}
		return
	}
	var shared *flags.Shared
	if h, ok := c.raw[schema.FlagsNamespace]; ok {
		if e, err := c.entryLocked(h); err == nil {
			doc, _ := json.Marshal(e.Value)
			shared, _ = flags.ParseShared(doc)
		}
	}
	defs := map[string]flags.Definition{}
	for key := range c.raw {
		if fk, ok := schema.FlagKeyOf(key); ok {
			if d := c.flagDefLocked(key); d != nil {
				defs[fk] = *d
			}
		}
	}
	next := flags.NewSet(defs, shared)
	next.KeepUsage(old)
	c.flags.Store(next)
}

// flagDefLocked is the stored definition of a flag's key; nil if none.
func (c *Client) flagDefLocked(key string) *flags.Definition {
	h, ok := c.raw[key]
	if !ok {
		return nil
	}
	e, err := c.entryLocked(h)
	if err != nil {
		return nil
	}
	doc, _ := json.Marshal(e.Value)
	var d flags.Definition
	if err := json.Unmarshal(doc, &d); err != nil {
		c.log.Error("a stored flag does not decode", zap.String("key", key), zap.Error(err))
		return nil
	}
	return &d
}

// isFlagKey reports whether a key is in the flags namespace.
func isFlagKey(key string) bool {
	return key == schema.FlagsNamespace || strings.HasPrefix(key, schema.FlagsNamespace+".")
}

// Flags is the compiled set of the cluster's feature flags, as of the
// applied revision (empty before the first list).
func (c *Client) Flags() *flags.Set {
	if s := c.flags.Load(); s != nil {
		return s
	}
	return flags.NewSet(nil, nil)
}

// EvaluateFlag evaluates the feature flag key ("new-checkout", without the
// namespace) for an evaluation context (flagd's: targetingKey and any
// attributes). It reads memory only.
func (c *Client) EvaluateFlag(ctx context.Context, key string, evalCtx map[string]any) flags.Detail {
	return c.Flags().Evaluate(key, evalCtx)
}

// IsEnabled reports whether a boolean flag is on for evalCtx: false when it
// is off, disabled, missing or not boolean.
func (c *Client) IsEnabled(ctx context.Context, key string, evalCtx map[string]any) bool {
	v, _ := c.BoolFlag(ctx, key, false, evalCtx)
	return v
}

// BoolFlag evaluates a boolean flag: its value, or def (with the reason
// and error code in the detail) when the answer is the caller's default.
func (c *Client) BoolFlag(ctx context.Context, key string, def bool, evalCtx map[string]any) (bool, flags.Detail) {
	return flags.As(c.EvaluateFlag(ctx, key, evalCtx), def)
}

// StringFlag evaluates a string flag, as BoolFlag.
func (c *Client) StringFlag(ctx context.Context, key, def string, evalCtx map[string]any) (string, flags.Detail) {
	return flags.As(c.EvaluateFlag(ctx, key, evalCtx), def)
}

// IntFlag evaluates a number flag as an integer (its whole part), as BoolFlag.
func (c *Client) IntFlag(ctx context.Context, key string, def int64, evalCtx map[string]any) (int64, flags.Detail) {
	return flags.As(c.EvaluateFlag(ctx, key, evalCtx), def)
}

// FloatFlag evaluates a number flag, as BoolFlag.
func (c *Client) FloatFlag(ctx context.Context, key string, def float64, evalCtx map[string]any) (float64, flags.Detail) {
	return flags.As(c.EvaluateFlag(ctx, key, evalCtx), def)
}

// ObjectFlag evaluates an object flag, as BoolFlag.
func (c *Client) ObjectFlag(ctx context.Context, key string, def map[string]any, evalCtx map[string]any) (map[string]any, flags.Detail) {
	return flags.As(c.EvaluateFlag(ctx, key, evalCtx), def)
}

// AllFlags evaluates every flag for evalCtx, by flag key.
func (c *Client) AllFlags(ctx context.Context, evalCtx map[string]any) map[string]flags.Detail {
	set := c.Flags()
	out := make(map[string]flags.Detail, len(set.Flags))
	for key, f := range set.Flags {
		out[key] = f.Evaluate(evalCtx)
	}
	return out
}

// SubscribeFlags calls h with the changes of the flags whose keys match
// pattern (as Subscribe's, on the flag key: "checkout-*", "*"). Event keys
// are the flags' keys in the store ("flags.checkout-v2"); read the new
// answer with EvaluateFlag, which is current before h runs.
func (c *Client) SubscribeFlags(pattern string, h Handler) *Subscription {
	return c.Subscribe(schema.FlagsNamespace+"."+pattern, h)
}

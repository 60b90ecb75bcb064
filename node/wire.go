package node

import (
	"context"

	"cfgcluster/api"
	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/watch"
)

func encode(v any) any { return schema.Encode(v) }

// schemaOrNil is the current schema, or nil when it cannot be read (then
// every value is redacted: when in doubt, do not show it).
func (n *Node) schemaOrNil(ctx context.Context) *schema.Schema {
	sch, _, _, err := n.store.Schema(ctx)
	if err != nil {
		return nil
	}
	return sch
}

// wireValue is an entry as the API shows it: sensitive values redacted.
func wireValue(sch *schema.Schema, e *kv.Entry) *api.Value {
	v := &api.Value{Key: e.Key, Value: encode(e.Value), Type: string(e.Type), Source: string(e.Source),
		Revision: e.Revision, CreateRevision: e.CreateRevision, Version: e.Version, Actor: e.Actor, Comment: e.Comment}
	if !e.Time.IsZero() {
		t := e.Time
		v.Time = &t
	}
	if sch != nil {
		if k, ok := sch.Lookup(e.Key); ok {
			v.Sensitive, v.RequiresRestart = k.Sensitive, k.RequiresRestart
		}
	}
	if v.Sensitive || sch == nil {
		v.Value = api.Redacted
	}
	return v
}

// cachedValue is a value from the node's cache as the API shows it.
func cachedValue(sch *schema.Schema, v watch.Value) *api.Value {
	out := &api.Value{Key: v.Key, Value: wireAny(sch, v.Key, v.Value), Type: string(v.Type), Source: string(v.Source),
		Revision: v.Revision, Actor: v.Actor, Comment: v.Comment, RequiresRestart: v.RequiresRestart}
	if k, ok := sch.Lookup(v.Key); ok {
		out.Sensitive = k.Sensitive
	}
	if !v.LastUpdated.IsZero() {
		t := v.LastUpdated
		out.Time = &t
	}
	return out
}

func wireResult(r *kv.Result) api.WriteResult {
	return api.WriteResult{Revision: r.Revision, DryRun: r.DryRun, Changes: wireChanges(r.Changes)}
}

func wireChanges(cs []kv.Change) []api.ChangeRecord {
	out := make([]api.ChangeRecord, len(cs))
	for i, c := range cs {
		out[i] = api.ChangeRecord{Key: c.Key, Old: c.Old, New: c.New, OldRevision: c.OldRevision, Deleted: c.Deleted, Redacted: c.Redacted}
	}
	return out
}

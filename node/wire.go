package node

import (
	"cfgcluster/api"
	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/watch"
)

// The schema used to show values is the node's watch client's: the
// cluster's, kept current by the watch, with no etcd round trip per request.

// sensitive reports whether the schema marks key sensitive.
func sensitive(sch *schema.Schema, key string) bool {
	k, ok := sch.Lookup(key)
	return ok && k.Sensitive
}

// wireAny is a typed value as the API shows it: JSON form, sensitive redacted.
func wireAny(sch *schema.Schema, key string, v any) any {
	if v == nil {
		return nil
	}
	if sensitive(sch, key) {
		return api.Redacted
	}
	return schema.Encode(v)
}

// wireDefault is a key's schema default as the API shows it (nil: none).
func wireDefault(sch *schema.Schema, k *schema.Key) any {
	d, ok := k.DefaultValue()
	if !ok {
		return nil
	}
	return wireAny(sch, k.Name, d)
}

// wireValue is an entry as the API shows it: sensitive values redacted.
func wireValue(sch *schema.Schema, e *kv.Entry) *api.Value {
	v := &api.Value{Key: e.Key, Value: wireAny(sch, e.Key, e.Value), Type: string(e.Type), Source: string(e.Source),
		Revision: e.Revision, CreateRevision: e.CreateRevision, Version: e.Version, Actor: e.Actor, Comment: e.Comment}
	if !e.Time.IsZero() {
		t := e.Time
		v.Time = &t
	}
	if k, ok := sch.Lookup(e.Key); ok {
		v.Sensitive, v.RequiresRestart = k.Sensitive, k.RequiresRestart
		v.Default = wireDefault(sch, k)
	}
	if e.Sensitive { // sensitive when written, though perhaps no longer in the schema
		v.Sensitive = true
		if v.Value != nil {
			v.Value = api.Redacted
		}
	}
	return v
}

// cachedValue is a value from the node's cache as the API shows it.
func cachedValue(sch *schema.Schema, v watch.Value) *api.Value {
	out := &api.Value{Key: v.Key, Value: wireAny(sch, v.Key, v.Value), Type: string(v.Type), Source: string(v.Source),
		Revision: v.Revision, Actor: v.Actor, Comment: v.Comment, RequiresRestart: v.RequiresRestart}
	out.Sensitive = sensitive(sch, v.Key)
	if k, ok := sch.Lookup(v.Key); ok {
		out.Default = wireDefault(sch, k)
	}
	if !v.LastUpdated.IsZero() {
		t := v.LastUpdated
		out.Time = &t
	}
	return out
}

func wireResult(r *kv.Result) api.WriteResult {
	return api.WriteResult{Revision: r.Revision, DryRun: r.DryRun, Changes: wireChanges(r.Changes), Unchanged: r.Unchanged}
}

func wireChanges(cs []kv.Change) []api.ChangeRecord {
	out := make([]api.ChangeRecord, len(cs))
	for i, c := range cs {
		out[i] = api.ChangeRecord{Key: c.Key, Old: c.Old, New: c.New, OldRevision: c.OldRevision, Deleted: c.Deleted, Redacted: c.Redacted,
			OldOmitted: c.OldOmitted, NewOmitted: c.NewOmitted}
	}
	return out
}

package kv

import (
	"go.etcd.io/etcd/api/v3/mvccpb"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

type seenKV struct {
	kv *mvccpb.KeyValue
	at int64 // the store revision at which kv was observed
}

// pastSchemas is how many schemas of old revisions a store keeps parsed.
const pastSchemas = 16

// maxSeen bounds the seen cache; past it the cache starts over.
const maxSeen = 100_000

type loadedSchema struct {
	rev    int64 // mod revision of the schema key; 0 when there is none
	doc    []byte
	schema *schema.Schema
}

func emptySchema() *schema.Schema {
	sch, _ := schema.Parse(nil)
	return sch
}

// remember records what a read at revision at found for an etcd key, unless
// a later observation is recorded already, and returns it (an absent key as
// a kv with ModRevision 0).
func (s *Store) remember(ek string, kvs []*mvccpb.KeyValue, at int64) *mvccpb.KeyValue {
	kv := first(kvs)
	if kv == nil {
		kv = &mvccpb.KeyValue{Key: []byte(ek)}
	}
	s.mu.Lock()
	if len(s.seen) >= maxSeen {
		s.seen = map[string]seenKV{}
	}
	if old, ok := s.seen[ek]; !ok || old.at <= at {
		s.seen[ek] = seenKV{kv: kv, at: at}
	}
	s.mu.Unlock()
	return kv
}

// loadSchema parses the stored schema if it changed since the last load.
func (s *Store) loadSchema(kvs []*mvccpb.KeyValue) (*loadedSchema, error) {
	kv := first(kvs)
	cur := s.schema.Load()
	if kv == nil {
		if cur.rev == 0 {
			return cur, nil
		}
		l := &loadedSchema{schema: emptySchema()}
		s.schema.Store(l)
		return l, nil
	}
	if kv.ModRevision == cur.rev {
		return cur, nil
	}
	sch, err := schema.Parse(kv.Value)
	if err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "schema", "the stored schema (revision %d) does not parse: %v", kv.ModRevision, err)
	}
	l := &loadedSchema{rev: kv.ModRevision, doc: kv.Value, schema: sch}
	if l.rev > s.schema.Load().rev {
		s.schema.Store(l)
	}
	return l, nil
}

func first(kvs []*mvccpb.KeyValue) *mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}

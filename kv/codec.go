package kv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
)

// MaxValueBytes is the largest encoded value a key may hold.
const MaxValueBytes = 1 << 20

// Source says where a value came from.
type Source string

const (
	SourceCluster Source = "cluster" // stored in etcd
	SourceDefault Source = "default" // the schema default; nothing stored
)

// Entry is a configuration value with its metadata. Value is the typed value
// (see package schema); Entries are built fresh for each caller.
type Entry struct {
	Key            string
	Value          any
	Type           schema.Type
	Source         Source
	Actor          string
	Time           time.Time
	Comment        string
	Revision       int64 // mod revision: the revision of the change that wrote it
	CreateRevision int64
	Version        int64
}

// envelope is the stored form of a value. It is the only codec: nothing
// outside this package reads or writes it.
type envelope struct {
	Value   json.RawMessage `json:"v"`
	Type    schema.Type     `json:"t"`
	Actor   string          `json:"by,omitempty"`
	Time    time.Time       `json:"at"`
	Comment string          `json:"c,omitempty"`
}

// encodeValue encodes a typed value for an envelope, refusing one over MaxValueBytes.
func encodeValue(k *schema.Key, v any) (json.RawMessage, error) {
	raw, err := json.Marshal(schema.Encode(v))
	if err != nil {
		return nil, cfgerr.Errorf(cfgerr.Invalid, k.Name, "value", "cannot be encoded: %v", err)
	}
	if len(raw) > MaxValueBytes {
		return nil, cfgerr.Errorf(cfgerr.Invalid, k.Name, "value", "%d bytes is over the %d-byte limit", len(raw), MaxValueBytes)
	}
	return raw, nil
}

func encodeEnvelope(t schema.Type, raw json.RawMessage, actor, comment string, at time.Time) []byte {
	b, _ := json.Marshal(envelope{Value: raw, Type: t, Actor: actor, Time: at.UTC(), Comment: comment})
	return b
}

// Decode decodes a value's etcd key-value into an Entry, typed and checked
// by the schema's key (a value that does not fit it is an Invalid error), or
// by the envelope's own type for a key the schema lacks. It is the codec's
// only way out of this package.
func (l Layout) Decode(sch *schema.Schema, kv *mvccpb.KeyValue) (*Entry, error) {
	key, ok := l.KeyOf(string(kv.Key))
	if !ok {
		return nil, cfgerr.Errorf(cfgerr.Internal, string(kv.Key), "", "not a value key of prefix %q", l.prefix)
	}
	return decodeEntry(sch, key, kv)
}

// decodeEntry decodes a stored value. It types the value by the schema's key
// when there is one and by the envelope's own type otherwise (a key since
// removed from the schema, read at an old revision).
func decodeEntry(sch *schema.Schema, key string, kv *mvccpb.KeyValue) (*Entry, error) {
	var env envelope
	if err := json.Unmarshal(kv.Value, &env); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, key, "", "stored envelope is corrupt: %v", err)
	}
	v, err := decodeValue(sch, key, env.Type, env.Value)
	if err != nil {
		return nil, err
	}
	return &Entry{
		Key: key, Value: v, Type: env.Type, Source: SourceCluster,
		Actor: env.Actor, Time: env.Time, Comment: env.Comment,
		Revision: kv.ModRevision, CreateRevision: kv.CreateRevision, Version: kv.Version,
	}, nil
}

func decodeValue(sch *schema.Schema, key string, t schema.Type, raw json.RawMessage) (any, error) {
	k := &schema.Key{Name: key, Type: t}
	if sk, ok := sch.Lookup(key); ok {
		k = sk
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var j any
	if err := d.Decode(&j); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, key, "", "stored value is corrupt: %v", err)
	}
	v, err := k.Coerce(j)
	if err != nil {
		return nil, fmt.Errorf("stored %s value does not fit the schema: %w", t, err)
	}
	return v, nil
}

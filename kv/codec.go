package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"cfgcluster/cfgerr"
	"cfgcluster/schema"
	"cfgcluster/seal"
)

// MaxValueBytes is the largest encoded value a key may hold.
const MaxValueBytes = 1 << 20

// Source says where a value came from.
type Source string

const (
	SourceCluster Source = "cluster" // stored in etcd
	SourceDefault Source = "default" // the schema default; nothing stored
	SourceUnset   Source = "unset"   // neither stored nor defaulted: the value is nil (List only)
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
	// Sensitive is set when the key was sensitive when the value was
	// written, or is now: callers that show values redact it either way.
	Sensitive bool
}

// envelope is the stored form of a value. It is the only codec: nothing
// outside this package reads or writes it.
type envelope struct {
	Value   json.RawMessage `json:"v,omitempty"`
	Type    schema.Type     `json:"t"`
	Actor   string          `json:"by,omitempty"`
	Time    time.Time       `json:"at"`
	Comment string          `json:"c,omitempty"`
	// Sensitive records that the key was sensitive when written, so the
	// value is redacted even once the key has left the schema.
	Sensitive bool `json:"s,omitempty"`
	// Sealed holds a sensitive key's value, sealed (Value is then empty).
	Sealed *seal.Box `json:"x,omitempty"`
}

// ChangeMeta is who made a change, when and why. The last-change key holds
// the latest value change's (see Layout.LastChangeKey).
type ChangeMeta struct {
	Actor   string    `json:"by,omitempty"`
	Time    time.Time `json:"at"`
	Comment string    `json:"c,omitempty"`
}

func encodeChangeMeta(meta Meta, at time.Time) string {
	b, _ := json.Marshal(ChangeMeta{Actor: meta.Actor, Time: at.UTC(), Comment: meta.Comment})
	return string(b)
}

// DecodeChangeMeta decodes the last-change key's value; false if it is not one.
func DecodeChangeMeta(b []byte) (ChangeMeta, bool) {
	var m ChangeMeta
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		return ChangeMeta{}, false
	}
	return m, true
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

// sealedBox is a stored value's sealed form; nil if it is stored in clear.
func sealedBox(kv *mvccpb.KeyValue) *seal.Box {
	var env struct {
		Sealed *seal.Box `json:"x"`
	}
	json.Unmarshal(kv.Value, &env)
	return env.Sealed
}

// encodeEnvelope encodes a value's envelope; a sealed value (box not nil)
// is kept only sealed.
func encodeEnvelope(k *schema.Key, raw json.RawMessage, box *seal.Box, actor, comment string, at time.Time) []byte {
	env := envelope{Value: raw, Type: k.Type, Actor: actor, Time: at.UTC(), Comment: comment, Sensitive: k.Sensitive, Sealed: box}
	if box != nil {
		env.Value = nil
	}
	b, _ := json.Marshal(env)
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
	return l.decodeEntry(sch, key, kv)
}

// unseal opens a sealed value of key; its errors are Sealed ones naming the
// key and the data key (none when the process holds no keyring), but for
// the keys' own read failing.
func (l Layout) unseal(key string, b *seal.Box) ([]byte, error) {
	if l.open == nil {
		return nil, cfgerr.Errorf(cfgerr.Sealed, key, "", "the value is sealed (data key %s) and this process holds no keyring to open it", b.Key)
	}
	raw, err := l.open.Open(key, b)
	var se *seal.Error
	if errors.As(err, &se) {
		return nil, cfgerr.Errorf(cfgerr.Sealed, key, "", "%s", se.Reason)
	}
	return raw, err
}

// decodeStored decodes a value as it was stored: typed by its envelope, no
// constraint checked. Reads of the past (history, diff, values at a
// revision) use it: what a revision held is shown as it was, whatever
// today's schema allows.
func (l Layout) decodeStored(key string, kv *mvccpb.KeyValue) (*Entry, error) {
	return l.decodeEntry(nil, key, kv)
}

// decodeEntry decodes a stored value. It types the value by the schema's key
// when there is one and by the envelope's own type otherwise (a key since
// removed from the schema, read at an old revision; or no schema at all:
// see decodeStored).
func (l Layout) decodeEntry(sch *schema.Schema, key string, kv *mvccpb.KeyValue) (*Entry, error) {
	var env envelope
	if err := json.Unmarshal(kv.Value, &env); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, key, "", "stored envelope is corrupt: %v", err)
	}
	if env.Sealed != nil {
		raw, err := l.unseal(key, env.Sealed)
		if err != nil {
			return nil, err
		}
		env.Value = raw
	}
	v, err := decodeValue(sch, key, env.Type, env.Value)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		Key: key, Value: v, Type: env.Type, Source: SourceCluster,
		Actor: env.Actor, Time: env.Time, Comment: env.Comment,
		Revision: kv.ModRevision, CreateRevision: kv.CreateRevision, Version: kv.Version,
		Sensitive: env.Sensitive,
	}
	if sch != nil {
		if k, ok := sch.Lookup(key); ok && k.Sensitive {
			e.Sensitive = true
		}
	}
	return e, nil
}

func decodeValue(sch *schema.Schema, key string, t schema.Type, raw json.RawMessage) (any, error) {
	k := typeOnly(key, t)
	if sch != nil {
		if sk, ok := sch.Lookup(key); ok {
			k = sk
		}
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

// typeOnly is a key of type t with no constraint, to type a value as it was
// stored (an enum is read as the string it is).
func typeOnly(key string, t schema.Type) *schema.Key {
	if t == schema.Enum {
		t = schema.String
	}
	return &schema.Key{Name: key, Type: t}
}

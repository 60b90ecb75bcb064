// Package seal holds keyrings and the sealed form of sensitive values:
// AES-256-GCM with a random nonce per value and the value's key name bound
// as associated data, so a ciphertext opens only as the value of the key it
// was sealed for.
//
// Keys come in two tiers, as envelope encryption through a KMS has them.
// Data keys seal values; each is for a scope (a key-name prefix, "" for
// every key) and is stored in etcd wrapped by a key-encryption key. A
// Provider holds the key-encryption keys and wraps and unwraps data keys:
// the local one is a keyring file on each node (Local), and a KMS or
// Vault's transit engine can be another without a change of format, since a
// wrapped data key records only the id of the key that wrapped it and the
// provider's opaque bytes.
//
// A service is given the data keys of its own scope, unwrapped, as a
// keyring file (cfgadm keys export --prefix P); it opens values with it and
// nothing else.
//
// The package is pure: no I/O but reading and writing keyring files.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// KeySize is the size of every key: AES-256.
const KeySize = 32

// Key is one key of a keyring.
type Key struct {
	ID      string    `json:"id"`
	Prefix  string    `json:"prefix"` // the key names it is for; "" for every key
	Created time.Time `json:"created"`
	Secret  []byte    `json:"secret"` // KeySize bytes (base64 in JSON)
}

// NewKey makes a key with a random secret and id for prefix; kind starts
// the id ("kek" for key-encryption keys, "dk" for data keys).
func NewKey(kind, prefix string, now time.Time) Key {
	secret := make([]byte, KeySize)
	rand.Read(secret) // never fails (crypto/rand panics instead)
	id := make([]byte, 6)
	rand.Read(id)
	return Key{ID: kind + "-" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(id), Prefix: prefix,
		Created: now.UTC().Truncate(time.Second), Secret: secret}
}

// Covers reports whether the key is for the key name.
func (k Key) Covers(name string) bool { return strings.HasPrefix(name, k.Prefix) }

func (k Key) check() error {
	if k.ID == "" {
		return errors.New("a key has no id")
	}
	if len(k.Secret) != KeySize {
		return fmt.Errorf("key %s: the secret is %d bytes, not %d", k.ID, len(k.Secret), KeySize)
	}
	return nil
}

// Box is a sealed value: the ciphertext and tag of AES-256-GCM under the
// key named by Key, with its nonce.
type Box struct {
	Key   string `json:"k"`
	Nonce []byte `json:"n"`
	Data  []byte `json:"d"`
}

// An Opener opens boxes: a Keyring, or a node's table of data keys.
type Opener interface {
	Open(name string, b *Box) ([]byte, error)
}

// Error is a failure to seal or open, naming the key name and the key id.
// Its message never holds key material or plaintext.
type Error struct {
	Name  string // the configuration key the value is for
	KeyID string
	// Missing is set when no key of that id is held (the keyring lacks it);
	// otherwise the box did not open: tampered, or sealed for another name,
	// or a different key under the same id.
	Missing bool
	Reason  string
}

func (e *Error) Error() string {
	return e.Reason
}

func sealWith(aead cipher.AEAD, id string, ad, plaintext []byte) *Box {
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return &Box{Key: id, Nonce: nonce, Data: aead.Seal(nil, nonce, plaintext, ad)}
}

// openWith opens b; what names what b is for the error (a value of name, or a data key).
func openWith(aead cipher.AEAD, name, what string, ad []byte, b *Box) ([]byte, error) {
	if len(b.Nonce) != aead.NonceSize() {
		return nil, &Error{Name: name, KeyID: b.Key, Reason: fmt.Sprintf("%s (key %s) has a %d-byte nonce, not %d: it is corrupt", what, b.Key, len(b.Nonce), aead.NonceSize())}
	}
	pt, err := aead.Open(nil, b.Nonce, b.Data, ad)
	if err != nil {
		return nil, &Error{Name: name, KeyID: b.Key, Reason: what + " does not open with key " + b.Key +
			": it was tampered with, moved from another key, or the " + b.Key + " held here is not the key that sealed it"}
	}
	return pt, nil
}

// valueAD is the associated data of a value of name: its name, so a
// ciphertext moved to another key does not open.
func valueAD(name string) []byte { return []byte("cfgcluster value\x00" + name) }

func newAEAD(key Key) (cipher.AEAD, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key.Secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Keyring is a set of keys: a keyring file's contents. It opens boxes
// sealed with any of its keys, and is safe for concurrent use.
type Keyring struct {
	Keys []Key `json:"keys"`

	mu    sync.Mutex
	aeads map[string]cipher.AEAD
}

// NewKEKRing returns a keyring of one new key-encryption key for every name:
// what a node makes at its first start, and cfgnode keyring writes.
func NewKEKRing() *Keyring {
	r, _ := NewKeyring(NewKey("kek", "", time.Now()))
	return r
}

// NewKeyring checks keys (ids unique, secrets of KeySize) and holds them.
func NewKeyring(keys ...Key) (*Keyring, error) {
	seen := map[string]bool{}
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("key %s is in the keyring twice", k.ID)
		}
		seen[k.ID] = true
	}
	return &Keyring{Keys: keys}, nil
}

// Add returns a keyring with the keys of r and k.
func (r *Keyring) Add(k Key) (*Keyring, error) {
	return NewKeyring(append(slices.Clone(r.Keys), k)...)
}

// Key returns the key of id.
func (r *Keyring) Key(id string) (Key, bool) {
	for _, k := range r.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// Newest returns the most recent key for exactly prefix.
func (r *Keyring) Newest(prefix string) (Key, bool) {
	var best Key
	found := false
	for _, k := range r.Keys {
		if k.Prefix == prefix && (!found || !k.Created.Before(best.Created)) {
			best, found = k, true
		}
	}
	return best, found
}

// Open opens a box sealed with one of the keyring's keys.
func (r *Keyring) Open(name string, b *Box) ([]byte, error) {
	aead, err := r.aead(b.Key)
	if err != nil {
		return nil, &Error{Name: name, KeyID: b.Key, Missing: true, Reason: err.Error()}
	}
	return openWith(aead, name, "the sealed value", valueAD(name), b)
}

// Seal seals plaintext as the value of name with the keyring's key id.
func (r *Keyring) Seal(id, name string, plaintext []byte) (*Box, error) {
	aead, err := r.aead(id)
	if err != nil {
		return nil, &Error{Name: name, KeyID: id, Missing: true, Reason: err.Error()}
	}
	return sealWith(aead, id, valueAD(name), plaintext), nil
}

func (r *Keyring) aead(id string) (cipher.AEAD, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.aeads[id]; ok {
		return a, nil
	}
	k, ok := r.Key(id)
	if !ok {
		return nil, fmt.Errorf("the sealed value needs key %s, which this keyring does not hold", id)
	}
	a, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	if r.aeads == nil {
		r.aeads = map[string]cipher.AEAD{}
	}
	r.aeads[id] = a
	return a, nil
}

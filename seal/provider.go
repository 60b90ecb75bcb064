package seal

import (
	"context"
	"fmt"
)

// Wrapped is a data key sealed by a Provider's key-encryption key: the id
// of that key and the provider's opaque bytes. It is what etcd stores.
type Wrapped struct {
	KEK  string `json:"kek"`
	Data []byte `json:"data"`
}

// A Provider holds key-encryption keys and wraps and unwraps data keys with
// them. Local is the keyring-file provider; a KMS (a data key wrapped by
// the KMS's key) or Vault's transit engine fit the same two calls.
type Provider interface {
	// Wrap seals a data key's secret under the provider's current
	// key-encryption key.
	Wrap(ctx context.Context, dataKeyID string, secret []byte) (Wrapped, error)
	// Unwrap returns the secret of a data key that it wrapped.
	Unwrap(ctx context.Context, dataKeyID string, w Wrapped) ([]byte, error)
}

// Local is the Provider of a keyring file: its newest key for every name
// (prefix "") wraps new data keys; any of its keys unwraps.
type Local struct{ ring *Keyring }

// NewLocal makes the provider of a keyring that holds at least one key
// for every name.
func NewLocal(ring *Keyring) (*Local, error) {
	if _, ok := ring.Newest(""); !ok {
		return nil, fmt.Errorf("the keyring has no key for every name (prefix \"\") to wrap data keys with")
	}
	return &Local{ring: ring}, nil
}

// Keyring returns the provider's keyring.
func (l *Local) Keyring() *Keyring { return l.ring }

// Wrap implements Provider.
func (l *Local) Wrap(_ context.Context, id string, secret []byte) (Wrapped, error) {
	kek, _ := l.ring.Newest("")
	aead, err := l.ring.aead(kek.ID)
	if err != nil {
		return Wrapped{}, err
	}
	b := sealWith(aead, kek.ID, dataKeyAD(id), secret)
	return Wrapped{KEK: kek.ID, Data: append(b.Nonce, b.Data...)}, nil
}

// Unwrap implements Provider.
func (l *Local) Unwrap(_ context.Context, id string, w Wrapped) ([]byte, error) {
	aead, err := l.ring.aead(w.KEK)
	if err != nil {
		return nil, &Error{KeyID: w.KEK, Missing: true, Reason: fmt.Sprintf(
			"data key %s is wrapped by key-encryption key %s, which this node's encryption keyring does not hold", id, w.KEK)}
	}
	n := aead.NonceSize()
	if len(w.Data) < n {
		return nil, &Error{KeyID: w.KEK, Reason: fmt.Sprintf("wrapped data key %s is corrupt: %d bytes", id, len(w.Data))}
	}
	secret, err := openWith(aead, "", "wrapped data key "+id, dataKeyAD(id), &Box{Key: w.KEK, Nonce: w.Data[:n], Data: w.Data[n:]})
	if err != nil {
		return nil, err
	}
	if len(secret) != KeySize {
		return nil, &Error{KeyID: w.KEK, Reason: fmt.Sprintf("data key %s unwraps to %d bytes, not %d", id, len(secret), KeySize)}
	}
	return secret, nil
}

// dataKeyAD is the associated data of a wrapped data key: its id, so a
// wrapped secret moved to another id does not unwrap.
func dataKeyAD(id string) []byte { return []byte("cfgcluster data key\x00" + id) }

package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"cfgcluster/api"
	"cfgcluster/kv"
	"cfgcluster/seal"
)

// KeyringFile is where a node keeps the encryption keyring it makes at its
// first start when it is given none: beside its data directory, not in it
// (etcd's snapshots and a copy of the data directory do not carry it).
func KeyringFile(dataDir string) string { return filepath.Clean(dataDir) + ".keyring" }

// encryptionProvider reads the node's keyring of key-encryption keys
// (--encryption-keyring), or makes one at KeyringFile(DataDir) if none was
// given and there is none there yet.
func (n *Node) encryptionProvider() (*seal.Local, string, error) {
	path := n.cfg.EncryptionKeyring
	if path == "" {
		path = KeyringFile(n.cfg.DataDir)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			ring := seal.NewKEKRing()
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, "", err
			}
			if err := seal.WriteKeyring(path, ring); err != nil {
				return nil, "", fmt.Errorf("encryption keyring: %w", err)
			}
			n.log.Warn("made an encryption keyring: sensitive values are sealed with keys it wraps. Back it up: without it they cannot be read. In production keep it away from the data directory and its backups, and give every node of a cluster the same one (--encryption-keyring)",
				zap.String("file", path))
		}
	}
	ring, err := seal.ReadKeyring(path)
	if err != nil {
		return nil, "", fmt.Errorf("--encryption-keyring: %w", err)
	}
	p, err := seal.NewLocal(ring)
	if err != nil {
		return nil, "", fmt.Errorf("--encryption-keyring %s: %w", path, err)
	}
	return p, path, nil
}

// checkKeys fails the start, clearly, when the cluster's data keys are
// wrapped by a key-encryption key this node's keyring lacks: it could
// neither seal nor open a sensitive value.
func (n *Node) checkKeys(ctx context.Context, path string) error {
	if err := n.store.CheckKeys(ctx); err != nil {
		return fmt.Errorf("encryption keyring %s: %w; start every node of a cluster with the same keyring (--encryption-keyring; cfgadm member add writes it for a joining member)", path, err)
	}
	return nil
}

// keyringFile is the encryption keyring's contents, for a joining member;
// nil (and logged) if it cannot be read.
func (n *Node) keyringFile() []byte {
	b, err := os.ReadFile(n.kekFile)
	if err != nil {
		n.log.Error("cannot read the encryption keyring for a joining member", zap.String("file", n.kekFile), zap.Error(err))
		return nil
	}
	return b
}

func (n *Node) encryptionKeys(w http.ResponseWriter, r *http.Request) error {
	st, err := n.store.Keys(r.Context())
	if err != nil {
		return err
	}
	out := api.EncryptionKeys{Keys: []api.EncryptionKey{}, Plain: st.Plain}
	for _, k := range st.Keys {
		out.Keys = append(out.Keys, wireKey(k))
	}
	return writeJSON(w, http.StatusOK, out)
}

func wireKey(k kv.KeyInfo) api.EncryptionKey {
	return api.EncryptionKey{ID: k.ID, Prefix: k.Prefix, Created: k.Created, KEK: k.KEK, Primary: k.Primary, Values: k.Values}
}

func (n *Node) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req api.RotateKeyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	k, err := n.store.RotateKey(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment}, req.Prefix)
	if err != nil {
		return err
	}
	n.log.Info("new data key", zap.String("id", k.ID), zap.String("prefix", k.Prefix), zap.String("by", actor(r)))
	return writeJSON(w, http.StatusOK, wireKey(*k))
}

func (n *Node) exportKeys(w http.ResponseWriter, r *http.Request) error {
	var req api.ExportKeysRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	ring, err := n.store.ExportKeys(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment}, req.Prefix)
	if err != nil {
		return err
	}
	n.log.Info("data keys exported", zap.String("prefix", req.Prefix), zap.Int("keys", len(ring.Keys)), zap.String("by", actor(r)))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(ring.Encode())
	return err
}

func (n *Node) retireKey(w http.ResponseWriter, r *http.Request) error {
	if err := n.store.RetireKey(r.Context(), kv.Meta{Actor: actor(r), Comment: r.URL.Query().Get("comment")}, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (n *Node) rewrap(w http.ResponseWriter, r *http.Request) error {
	var req api.ReencryptRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	done, err := n.store.RewrapKeys(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Reencrypted{Resealed: done})
}

func (n *Node) reencrypt(w http.ResponseWriter, r *http.Request) error {
	var req api.ReencryptRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	done, err := n.store.Reencrypt(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment}, func(done, left int) {
		n.log.Info("re-sealing values", zap.Int("done", done), zap.Int("left", left))
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Reencrypted{Resealed: done.Values, Audit: done.Audit})
}

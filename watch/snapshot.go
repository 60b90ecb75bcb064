package watch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

// snapshotFile is the last-known state, written when values change.
type snapshotFile struct {
	Revision  int64           `json:"revision"`
	WrittenAt time.Time       `json:"written_at"`
	Prefix    string          `json:"prefix"`
	Schema    string          `json:"schema,omitempty"` // the cluster's schema document
	Values    []snapshotValue `json:"values"`
	Windows   []*kv.Window    `json:"windows,omitempty"` // maintenance windows
}

type snapshotValue struct {
	Key            string          `json:"key"` // the etcd key
	Envelope       json.RawMessage `json:"envelope"`
	ModRevision    int64           `json:"mod_revision"`
	CreateRevision int64           `json:"create_revision"`
	Version        int64           `json:"version"`
}

// writeSnapshot writes the state atomically: a temporary file in the same
// folder, fsync, rename, fsync of the folder.
func (c *Client) writeSnapshot() error {
	c.mu.Lock()
	f := snapshotFile{Revision: c.rev, WrittenAt: time.Now().UTC(), Prefix: c.layout.Prefix(), Schema: string(c.schemaDoc)}
	for _, h := range c.raw {
		kvp := h.kv
		f.Values = append(f.Values, snapshotValue{Key: string(kvp.Key), Envelope: kvp.Value,
			ModRevision: kvp.ModRevision, CreateRevision: kvp.CreateRevision, Version: kvp.Version})
	}
	for _, w := range c.windows {
		f.Windows = append(f.Windows, w)
	}
	c.mu.Unlock()
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	path := c.opt.snapshot
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// loadSnapshot fills the state from the snapshot file.
func (c *Client) loadSnapshot() error {
	if c.opt.snapshot == "" {
		return fmt.Errorf("no snapshot file configured")
	}
	data, err := os.ReadFile(c.opt.snapshot)
	if err != nil {
		return err
	}
	var f snapshotFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("snapshot %s is corrupt: %w", c.opt.snapshot, err)
	}
	if f.Prefix != c.layout.Prefix() {
		return fmt.Errorf("snapshot %s is of prefix %q, not %q", c.opt.snapshot, f.Prefix, c.layout.Prefix())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ownSchema && f.Schema != "" {
		sch, err := schema.Parse([]byte(f.Schema))
		if err != nil {
			return fmt.Errorf("snapshot %s: its schema does not parse: %w", c.opt.snapshot, err)
		}
		c.sch.Store(sch)
		c.schemaDoc = []byte(f.Schema)
	}
	for _, v := range f.Values {
		kvp := &mvccpb.KeyValue{Key: []byte(v.Key), Value: v.Envelope, ModRevision: v.ModRevision,
			CreateRevision: v.CreateRevision, Version: v.Version}
		key, ok := c.layout.KeyOf(v.Key)
		if !ok {
			continue
		}
		if _, err := c.layout.Decode(c.sch.Load(), kvp); err != nil && cfgerr.CodeOf(err) != cfgerr.Sealed {
			c.log.Error("snapshot value does not fit the schema; skipped", zap.String("key", key), zap.Error(err))
			continue
		}
		c.raw[key] = held{kvp}
	}
	for _, w := range f.Windows {
		c.windows[w.Scope] = w
	}
	c.updateFlagsLocked(nil, true)
	c.rev, c.from = f.Revision, SourceSnapshot
	c.log.Info("serving from the snapshot", zap.String("file", c.opt.snapshot), zap.Int64("revision", f.Revision),
		zap.Time("written_at", f.WrittenAt), zap.Int("values", len(f.Values)))
	return nil
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
)

// restoreCommand seeds a new member's data directory from a snapshot made by
// cfgadm snapshot save; start cfgnode on that --data-dir afterwards. Restore
// every member of the new cluster from the same file, each with its own
// --name and --initial-advertise-peer-urls and the same --initial-cluster.
func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "seed a new cluster's member from a snapshot file (cfgadm snapshot save)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "the snapshot file"},
			&cli.StringFlag{Name: "sha256", Usage: "the checksum the snapshot must have (cfgadm wrote FILE.sha256)"},
			flag("name", "default", "member name"),
			flag("data-dir", "./cfgnode-data", "the new member's data directory (must not exist)"),
			flag("initial-advertise-peer-urls", "http://127.0.0.1:2380", "this member's peer URLs"),
			flag("initial-cluster", "", "the new cluster, name=peerURL,... (default: this member alone)"),
		},
		Action: func(c *cli.Context) error {
			if want := c.String("sha256"); want != "" {
				if err := checkSum(c.String("from"), want); err != nil {
					return err
				}
			}
			peers := strings.Split(c.String("initial-advertise-peer-urls"), ",")
			initial := c.String("initial-cluster")
			if initial == "" {
				initial = c.String("name") + "=" + peers[0]
			}
			if err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
				SnapshotPath: c.String("from"), Name: c.String("name"), OutputDataDir: c.String("data-dir"),
				PeerURLs: peers, InitialCluster: initial, InitialClusterToken: "etcd-cluster",
			}); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			// The snapshot's etcd users are the old cluster's nodes: the
			// restored members could not log in. etcd's auth goes off in
			// the restored data; each node makes its user at its first
			// start, and the last of them turns auth on again.
			be := backend.NewDefaultBackend(zap.NewNop(), filepath.Join(c.String("data-dir"), "member", "snap", "db"))
			ab := schema.NewAuthBackend(zap.NewNop(), be)
			tx := ab.BatchTx()
			tx.Lock()
			tx.UnsafeSaveAuthEnabled(false)
			tx.Unlock()
			ab.ForceCommit()
			if err := be.Close(); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			fmt.Fprintf(os.Stdout, "restored %s into %s: start cfgnode --data-dir %s --name %s\n",
				c.String("from"), c.String("data-dir"), c.String("data-dir"), c.String("name"))
			return nil
		},
	}
}

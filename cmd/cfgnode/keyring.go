package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/seal"
)

// keyringCommand makes an encryption keyring for a cluster's nodes: every
// node of a cluster is started with the same one (--encryption-keyring).
func keyringCommand() *cli.Command {
	return &cli.Command{
		Name:      "keyring",
		Usage:     "make an encryption keyring (a key-encryption key) for the nodes of a cluster: give each the same file with --encryption-keyring",
		ArgsUsage: "FILE",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "add", Usage: "add a new key-encryption key to the existing FILE: it wraps data keys from then on " +
			"(give every node the new file, restart them, then cfgadm keys rewrap)"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("keyring takes the FILE to write (got %d arguments)", c.NArg())
			}
			path, kek := c.Args().First(), seal.NewKey("kek", "", time.Now())
			if c.Bool("add") {
				ring, err := seal.ReadKeyring(path)
				if err != nil {
					return err
				}
				if ring, err = ring.Add(kek); err != nil {
					return err
				}
				if err := seal.ReplaceKeyring(path, ring); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "added key-encryption key %s to %s: copy it to every node and restart each, then run cfgadm keys rewrap; the older keys can leave the file once cfgadm keys status shows none wraps a data key\n", kek.ID, path)
				return nil
			}
			ring, _ := seal.NewKeyring(kek)
			if err := seal.WriteKeyring(path, ring); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s (mode 0600): keep it away from the data and its backups, and back it up; without it sensitive values cannot be read\n", path)
			return nil
		},
	}
}

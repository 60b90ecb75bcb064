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
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("keyring takes the FILE to write (got %d arguments)", c.NArg())
			}
			ring, _ := seal.NewKeyring(seal.NewKey("kek", "", time.Now()))
			if err := seal.WriteKeyring(c.Args().First(), ring); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s (mode 0600): keep it away from the data and its backups, and back it up; without it sensitive values cannot be read\n", c.Args().First())
			return nil
		},
	}
}

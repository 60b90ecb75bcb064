package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func keysCommand() *cli.Command {
	scope := func(p string) string {
		if p == "" {
			return "(every key)"
		}
		return p
	}
	comment := &cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"}
	return &cli.Command{
		Name:  "keys",
		Usage: "the data keys that seal sensitive values: status, rotation, re-encryption, export for a service (admin)",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "list the data keys with the number of values each seals",
				Action: func(c *cli.Context) error {
					st, err := client(c).EncryptionKeys(c.Context)
					if err != nil {
						return err
					}
					return show(c, st, func(t *table) {
						t.header("ID", "PREFIX", "PRIMARY", "VALUES", "CREATED", "WRAPPED BY")
						for _, k := range st.Keys {
							t.row(k.ID, scope(k.Prefix), fmt.Sprint(k.Primary), fmt.Sprint(k.Values), k.Created.Format(time.RFC3339), k.KEK)
						}
						if st.Plain > 0 {
							t.note("%d value(s) of sensitive keys are not sealed (written before the key became sensitive): cfgadm keys reencrypt seals them", st.Plain)
						}
					})
				},
			},
			{
				Name:  "rotate",
				Usage: "make a new primary data key, for every key or for --prefix; values sealed before keep their key until reencrypt",
				Flags: []cli.Flag{&cli.StringFlag{Name: "prefix", Usage: "the key names it seals (billing.); a key of a service's own prefix can be exported to it alone"}, comment},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, "no arguments"); err != nil {
						return err
					}
					k, err := client(c).RotateKey(c.Context, api.RotateKeyRequest{Prefix: c.String("prefix"), Comment: c.String("comment")})
					if err != nil {
						return err
					}
					return show(c, k, func(t *table) {
						t.note("data key %s now seals new values of %s; cfgadm keys reencrypt moves the values sealed before to it", k.ID, scope(k.Prefix))
					})
				},
			},
			{
				Name:  "reencrypt",
				Usage: "re-seal every value, and every sealed value of the audit trail, not sealed with the newest key for it (resumable: run it again after an interruption)",
				Flags: []cli.Flag{comment},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, "no arguments"); err != nil {
						return err
					}
					r, err := client(c).Reencrypt(c.Context, api.ReencryptRequest{Comment: c.String("comment")})
					if err != nil {
						return err
					}
					return show(c, r, func(t *table) {
						t.note("re-sealed %d value(s), and the sealed values of %d audit record(s) and index entries", r.Resealed, r.Audit)
					})
				},
			},
			{
				Name:  "rewrap",
				Usage: "wrap every data key with the newest key-encryption key of the nodes' keyring (after cfgnode keyring --add on every node)",
				Flags: []cli.Flag{comment},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, "no arguments"); err != nil {
						return err
					}
					r, err := client(c).Rewrap(c.Context, api.ReencryptRequest{Comment: c.String("comment")})
					if err != nil {
						return err
					}
					return show(c, r, func(t *table) { t.note("rewrapped %d data key(s)", r.Resealed) })
				},
			},
			{
				Name:      "retire",
				Usage:     "delete a data key that nothing is sealed with any more (refused, naming what still uses it, otherwise)",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{comment},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a data key ID"); err != nil {
						return err
					}
					if err := client(c).RetireKey(c.Context, c.Args().First(), c.String("comment")); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "retired data key %s\n", c.Args().First())
					return nil
				},
			},
			{
				Name:  "export",
				Usage: "write the data keys of --prefix as a keyring file for a service (watch.WithKeyring; examples/service --keyring)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "prefix", Required: true, Usage: "the service's key names (billing.)"},
					&cli.StringFlag{Name: "out", Usage: "write it to this file (mode 0600) instead of standard output"},
					comment,
				},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, "no arguments"); err != nil {
						return err
					}
					out := c.String("out")
					if out != "" {
						if _, err := os.Stat(out); err == nil {
							return fmt.Errorf("%s exists: remove it, or give another --out", out)
						}
					}
					ring, err := client(c).ExportKeys(c.Context, api.ExportKeysRequest{Prefix: c.String("prefix"), Comment: c.String("comment")})
					if err != nil {
						return err
					}
					if out == "" {
						_, err = stdout(c).Write(ring)
						return err
					}
					f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
					if err != nil {
						return err
					}
					if _, err := f.Write(ring); err != nil {
						f.Close()
						return err
					}
					if err := f.Close(); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "wrote the data keys of %s to %s (mode 0600)\n", c.String("prefix"), out)
					return nil
				},
			},
		},
	}
}

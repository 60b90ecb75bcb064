package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/auth"
)

func serviceAccountCommand() *cli.Command {
	return &cli.Command{
		Name:  "service-account",
		Usage: "etcd users for services: each reads the configuration and writes only its own instances (admin)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "make an etcd user for the service NAME; its password is written to --out, or printed once",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "write the credential (user:password, mode 0600) to this file, which a service reads (examples/service --etcd-credential FILE)"},
					&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"},
				},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a service account NAME"); err != nil {
						return err
					}
					out := c.String("out")
					if out != "" {
						if _, err := os.Stat(out); err == nil {
							return fmt.Errorf("%s exists: remove it, or give another --out", out)
						}
					}
					sa, err := client(c).CreateServiceAccount(c.Context, api.ServiceAccountRequest{Name: c.Args().First(), Comment: c.String("comment")})
					if err != nil {
						return err
					}
					cred := auth.EtcdCredential{User: sa.EtcdUser, Password: sa.EtcdPassword}
					if out == "" {
						if structured(c) {
							return show(c, sa, nil)
						}
						fmt.Fprintf(stdout(c), "user: %s\npassword: %s\n", cred.User, cred.Password)
						fmt.Fprintf(os.Stderr, "cfgadm: service account %s made; its password is shown this once: pass both to clientv3.Config{Username, Password}\n", sa.Name)
						return nil
					}
					if err := cred.Write(out); err != nil {
						return fmt.Errorf("service account %s made, but its credential could not be written (delete it and make it again): %w", sa.Name, err)
					}
					sa.EtcdPassword = ""
					return show(c, sa, func(t *table) {
						t.note("service account %s made: etcd user %s, role %s; its credential is in %s (mode 0600)", sa.Name, cred.User, sa.Role, out)
					})
				},
			},
			{
				Name:  "list",
				Usage: "list the service accounts (never their passwords)",
				Action: func(c *cli.Context) error {
					l, err := client(c).ServiceAccounts(c.Context)
					if err != nil {
						return err
					}
					return show(c, l, func(t *table) {
						t.header("NAME", "ETCD ROLE", "CREATED", "BY")
						for _, sa := range l.ServiceAccounts {
							t.row(sa.Name, sa.Role, sa.Created.Format(time.RFC3339), text(sa.Creator))
						}
					})
				},
			},
			{
				Name:      "delete",
				Usage:     "delete a service account: etcd refuses its credential from then on",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a service account NAME"); err != nil {
						return err
					}
					if err := client(c).DeleteServiceAccount(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "deleted service account %s\n", c.Args().First())
					return nil
				},
			},
		},
	}
}

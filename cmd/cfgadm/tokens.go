package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/clientconfig"
)

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:  "login",
		Usage: "add a context for a node with the token in a file, check it, and make it current",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "the context's name (default: the endpoint's host)"},
			&cli.StringFlag{Name: "ca-file", Usage: "the PEM CA that signed the node's certificate (https endpoints)"},
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, "no arguments: give --endpoint URL --token-file FILE"); err != nil {
				return err
			}
			if !c.IsSet("endpoint") || c.String("token-file") == "" {
				return usageError("login needs --endpoint URL and --token-file FILE")
			}
			file, err := filepath.Abs(c.String("token-file"))
			if err != nil {
				return localError(err)
			}
			cl := client(c)
			ctx := clientconfig.Context{Name: c.String("name"), Endpoint: cl.Endpoint, TokenFile: file}
			if ctx.Name == "" {
				ctx.Name = strings.NewReplacer("http://", "", "https://", "", ":", "-").Replace(cl.Endpoint)
			}
			if c.IsSet("ca-file") {
				// The check below trusts the CA given here, not the current context's.
				if ctx.CAFile, err = filepath.Abs(c.String("ca-file")); err != nil {
					return localError(err)
				}
				if err := configure(&ctx, cl); err != nil {
					return localError(err)
				}
			}
			who, err := cl.WhoAmI(c.Context)
			if err != nil {
				return err
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			cfg.Put(ctx)
			cfg.CurrentContext = ctx.Name
			if err := saveConfig(cfg); err != nil {
				return err
			}
			name := ctx.Name
			fmt.Fprintf(stdout(c), "logged in to %s as %s (token %s); context %q is current\n", cl.Endpoint, who.Subject, who.Token, name)
			return nil
		},
	}
}

func whoamiCommand() *cli.Command {
	return &cli.Command{
		Name:  "whoami",
		Usage: "show the token cfgadm presents, its subject and what it may do",
		Action: func(c *cli.Context) error {
			w, err := client(c).WhoAmI(c.Context)
			if err != nil {
				return err
			}
			return show(c, w, func(t *table) {
				t.note("token %s, subject %s", w.Token, w.Subject)
				t.header("VERBS", "ON KEYS UNDER")
				for _, g := range w.Grants {
					t.row(strings.Join(g.Verbs, ","), prefixName(g.Prefix))
				}
			})
		},
	}
}

func prefixName(p string) string {
	if p == "" {
		return "(every key)"
	}
	return p
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "create, list and revoke tokens (admin)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "make a token; it is printed once and never stored",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "role", Required: true, Usage: "a role: viewer, editor, approver, operator, admin, or a custom one (repeat for more)"},
					&cli.StringSliceFlag{Name: "prefix", Usage: "only keys under this prefix (repeat for more)"},
					&cli.StringFlag{Name: "subject", Usage: "who uses it, as the audit trail names them (default: NAME)"},
					&cli.StringFlag{Name: "expires", Usage: "how long it lasts: 30d, 12h (default: never)"},
					&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"},
				},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a token NAME"); err != nil {
						return err
					}
					expires, err := days(c.String("expires"))
					if err != nil {
						return err
					}
					t, err := client(c).CreateToken(c.Context, api.TokenRequest{Name: c.Args().First(), Subject: c.String("subject"),
						Roles: c.StringSlice("role"), Prefixes: c.StringSlice("prefix"), Expires: expires, Comment: c.String("comment")})
					if err != nil {
						return err
					}
					if structured(c) {
						return show(c, t, nil)
					}
					fmt.Fprintln(stdout(c), t.Token)
					fmt.Fprintf(os.Stderr, "cfgadm: token %s for %s made; it is shown this once: store it now\n", t.Name, t.Subject)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list the tokens (never their secrets)",
				Action: func(c *cli.Context) error {
					l, err := client(c).Tokens(c.Context)
					if err != nil {
						return err
					}
					return show(c, l, func(t *table) {
						t.header("NAME", "SUBJECT", "ROLES", "PREFIXES", "CREATED", "EXPIRES", "BY")
						for _, tk := range l.Tokens {
							exp := "never"
							if !tk.Expires.IsZero() {
								exp = tk.Expires.Format(time.RFC3339)
							}
							t.row(tk.Name, tk.Subject, strings.Join(tk.Roles, ","), text(strings.Join(tk.Prefixes, ",")),
								tk.Created.Format(time.RFC3339), exp, text(tk.Creator))
						}
					})
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a token: every node refuses it within a second",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a token NAME"); err != nil {
						return err
					}
					if err := client(c).RevokeToken(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "revoked token %s\n", c.Args().First())
					return nil
				},
			},
		},
	}
}

// days reads a lifetime: Go's durations, and a number of days (30d).
func days(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var d int
		if _, err := fmt.Sscanf(n, "%d", &d); err == nil && d > 0 && fmt.Sprint(d) == n {
			return (time.Duration(d) * 24 * time.Hour).String(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d.String(), nil
	}
	return "", usageError("--expires %q: give a duration such as 30d, 12h or 90m", s)
}

func roleCommand() *cli.Command {
	return &cli.Command{
		Name:  "role",
		Usage: "custom roles: verbs on key prefixes (admin)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create or replace a role granting --verbs on the keys under each --prefix",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "verbs", Required: true, Usage: "comma-separated: read, read-sensitive, write, approve, operate, admin"},
					&cli.StringSliceFlag{Name: "prefix", Usage: "keys under this prefix (repeat for more; none: every key)"},
				},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a role NAME"); err != nil {
						return err
					}
					verbs := strings.Split(c.String("verbs"), ",")
					role := api.Role{Name: c.Args().First()}
					prefixes := c.StringSlice("prefix")
					if len(prefixes) == 0 {
						prefixes = []string{""}
					}
					for _, p := range prefixes {
						role.Grants = append(role.Grants, api.Grant{Verbs: verbs, Prefix: p})
					}
					if err := client(c).PutRole(c.Context, role); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "role %s grants %s on %s\n", role.Name, c.String("verbs"), strings.Join(prefixes, ", "))
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list the built-in and custom roles",
				Action: func(c *cli.Context) error {
					l, err := client(c).Roles(c.Context)
					if err != nil {
						return err
					}
					return show(c, l, func(t *table) {
						t.header("ROLE", "VERBS", "ON KEYS UNDER", "KIND")
						for _, r := range l.Roles {
							kind := "custom"
							if r.BuiltIn {
								kind = "built-in"
							}
							for _, g := range r.Grants {
								t.row(r.Name, strings.Join(g.Verbs, ","), prefixName(g.Prefix), kind)
							}
						}
					})
				},
			},
			{
				Name:      "delete",
				Usage:     "delete a custom role; tokens that name it lose what it granted",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "a role NAME"); err != nil {
						return err
					}
					if err := client(c).DeleteRole(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "deleted role %s\n", c.Args().First())
					return nil
				},
			},
		},
	}
}

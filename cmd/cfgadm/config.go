package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/clientconfig"
)

// currentContext is the context --context (or CFGADM_CONTEXT) names, else
// the file's current one; an empty context when there is none.
func currentContext(c *cli.Context) (*clientconfig.Context, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	// The app's --context: a command's own flag of that name (flag eval's
	// evaluation context) is another thing. The lineage ends at the app's
	// context (and an empty one above it); Value finds a flag only where it
	// is defined, looking up from there.
	app := c
	lineage := c.Lineage()
	for i := len(lineage) - 1; i >= 0; i-- {
		if lineage[i].Value("context") != nil {
			app = lineage[i]
			break
		}
	}
	name := cfg.CurrentContext
	if app.IsSet("context") {
		name = app.String("context")
	}
	if name == "" {
		return &clientconfig.Context{}, nil
	}
	ctx := cfg.Find(name)
	if ctx == nil {
		if app.IsSet("context") {
			return nil, cfgerr.Errorf(cfgerr.NotFound, "", "context", "no context %q in %s", name, clientconfig.Path())
		}
		return &clientconfig.Context{}, nil
	}
	return ctx, nil
}

// configure gives the client the context's credentials: a bearer token and,
// for https endpoints, the CA that signed the node's certificate.
func configure(ctx *clientconfig.Context, cl *api.Client) error {
	token := ctx.Token
	if ctx.TokenFile != "" {
		b, err := os.ReadFile(ctx.TokenFile)
		if err != nil {
			return fmt.Errorf("context %q: reading its token file: %w", ctx.Name, err)
		}
		token = strings.TrimSpace(string(b))
	}
	cl.Token = token
	if ctx.CAFile == "" && ctx.CertFile == "" {
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ctx.CAFile != "" {
		pem, err := os.ReadFile(ctx.CAFile)
		if err != nil {
			return fmt.Errorf("context %q: reading its CA file: %w", ctx.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("context %q: %s holds no PEM certificate", ctx.Name, ctx.CAFile)
		}
		tc.RootCAs = pool
	}
	if ctx.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(ctx.CertFile, ctx.KeyFile)
		if err != nil {
			return fmt.Errorf("context %q: its client certificate: %w", ctx.Name, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	cl.HTTP.Transport = tr
	return nil
}

func configCommand() *cli.Command {
	// named is the action of a subcommand that takes a context NAME.
	named := func(fn func(c *cli.Context, cfg *clientconfig.File, name string) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("%s takes a context NAME", c.Command.HelpName)
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return fn(c, cfg, c.Args().First())
		}
	}
	return &cli.Command{
		Name:  "config",
		Usage: "contexts: named nodes with their credentials, in " + strings.Replace(clientconfig.Path(), os.Getenv("HOME"), "~", 1),
		Subcommands: []*cli.Command{
			{
				Name:  "get-contexts",
				Usage: "list the contexts; * marks the current one",
				Action: func(c *cli.Context) error {
					cfg, err := loadConfig()
					if err != nil {
						return err
					}
					return show(c, cfg.Contexts, func(t *table) {
						t.empty = "no contexts in " + clientconfig.Path() + ": add one with cfgadm config set-context NAME --endpoint URL"
						t.header("CURRENT", "NAME", "ENDPOINT", "CREDENTIALS", "CA")
						for _, ctx := range cfg.Contexts {
							cur, cred := "", "-"
							if ctx.Name == cfg.CurrentContext {
								cur = "*"
							}
							switch {
							case ctx.TokenFile != "":
								cred = "token-file " + ctx.TokenFile
							case ctx.Token != "":
								cred = "token" // never the token itself
							}
							t.row(cur, ctx.Name, ctx.Endpoint, cred, text(ctx.CAFile))
						}
					})
				},
			},
			{
				Name:  "current-context",
				Usage: "print the current context's name",
				Action: func(c *cli.Context) error {
					cfg, err := loadConfig()
					if err != nil {
						return err
					}
					if cfg.CurrentContext == "" {
						return cfgerr.Errorf(cfgerr.NotFound, "", "context", "no current context in %s", clientconfig.Path())
					}
					fmt.Fprintln(stdout(c), cfg.CurrentContext)
					return nil
				},
			},
			{
				Name:      "use-context",
				Usage:     "make NAME the current context",
				ArgsUsage: "NAME",
				Action: named(func(c *cli.Context, cfg *clientconfig.File, n string) error {
					if cfg.Find(n) == nil {
						var names []string
						for _, ctx := range cfg.Contexts {
							names = append(names, ctx.Name)
						}
						return cfgerr.Errorf(cfgerr.NotFound, "", "context", "no context %q (there are: %s)", n, strings.Join(names, ", "))
					}
					cfg.CurrentContext = n
					if err := saveConfig(cfg); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "switched to context %q\n", n)
					return nil
				}),
			},
			{
				Name:      "set-context",
				Usage:     "add a context, or change the fields given of one; the first context becomes the current one",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "endpoint", Usage: "the node's API: URL or host:port"},
					&cli.StringFlag{Name: "token-file", Usage: "a file holding the bearer token"},
					&cli.StringFlag{Name: "ca-file", Usage: "the PEM CA that signed the node's certificate (https endpoints)"},
					&cli.StringFlag{Name: "cert-file", Usage: "a client certificate (PEM), for nodes started with --client-cert-auth"},
					&cli.StringFlag{Name: "key-file", Usage: "the client certificate's key (PEM)"},
					&cli.BoolFlag{Name: "current", Usage: "also make it the current context"},
				},
				Action: named(func(c *cli.Context, cfg *clientconfig.File, n string) error {
					ctx := cfg.Find(n)
					if ctx == nil {
						if !c.IsSet("endpoint") {
							return usageError("a new context needs --endpoint")
						}
						cfg.Contexts = append(cfg.Contexts, clientconfig.Context{Name: n})
						ctx = &cfg.Contexts[len(cfg.Contexts)-1]
					}
					for flag, field := range map[string]*string{"endpoint": &ctx.Endpoint, "token-file": &ctx.TokenFile, "ca-file": &ctx.CAFile,
						"cert-file": &ctx.CertFile, "key-file": &ctx.KeyFile} {
						if c.IsSet(flag) {
							*field = c.String(flag)
						}
					}
					for _, f := range []*string{&ctx.TokenFile, &ctx.CAFile, &ctx.CertFile, &ctx.KeyFile} {
						if *f != "" && !filepath.IsAbs(*f) {
							abs, err := filepath.Abs(*f)
							if err != nil {
								return localError(err)
							}
							*f = abs
						}
					}
					if c.Bool("current") || cfg.CurrentContext == "" {
						cfg.CurrentContext = n
					}
					if err := saveConfig(cfg); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "context %q set (%s)\n", n, clientconfig.Path())
					return nil
				}),
			},
			{
				Name:      "delete-context",
				Usage:     "remove a context",
				ArgsUsage: "NAME",
				Action: named(func(c *cli.Context, cfg *clientconfig.File, n string) error {
					i := slices.IndexFunc(cfg.Contexts, func(ctx clientconfig.Context) bool { return ctx.Name == n })
					if i < 0 {
						return cfgerr.Errorf(cfgerr.NotFound, "", "context", "no context %q", n)
					}
					cfg.Contexts = slices.Delete(cfg.Contexts, i, i+1)
					if cfg.CurrentContext == n {
						cfg.CurrentContext = ""
					}
					if err := saveConfig(cfg); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "deleted context %q\n", n)
					return nil
				}),
			},
		},
	}
}

// loadConfig reads the config file; an error in it is exit 2, naming it.
func loadConfig() (*clientconfig.File, error) {
	cfg, err := clientconfig.Load()
	if err != nil && cfgerr.First(err) == nil {
		return nil, localError(err)
	}
	return cfg, err
}

func saveConfig(cfg *clientconfig.File) error {
	if err := cfg.Save(); err != nil {
		return localError(err)
	}
	return nil
}

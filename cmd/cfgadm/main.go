package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/clientconfig"
	"cfgcluster/version"
)

func main() {
	os.Exit(run(os.Args))
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "cfgadm",
		Usage:   "administer a cfgcluster: typed, validated, audited configuration",
		Version: version.Build(),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoint", EnvVars: []string{"CFGADM_ENDPOINT"}, Usage: "a node's API: URL or host:port (default: the context's, else http://127.0.0.1:7380)"},
			&cli.StringFlag{Name: "context", EnvVars: []string{"CFGADM_CONTEXT"}, Usage: "the context of the config file to use (default: its current-context)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: formats},
			&cli.BoolFlag{Name: "no-headers", Usage: "tables without their header line"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"CFGADM_TOKEN_FILE"}, Usage: "a file holding the token to present (default: the context's; env CFGADM_TOKEN gives one directly)"},
		},
		Commands: []*cli.Command{
			getCommand(), setCommand(), deleteCommand(), listCommand(), historyCommand(), diffCommand(),
			rollbackCommand(), applyCommand(), schemaCommand(), auditCommand(), watchCommand(),
			maintenanceCommand(), instancesCommand(), restartsCommand(), rolloutCommand(),
			clusterCommand(), memberCommand(), snapshotCommand(), defragCommand(),
			configCommand(), loginCommand(), whoamiCommand(), tokenCommand(), roleCommand(), serviceAccountCommand(), keysCommand(),
			proposalsCommand(), proposalCommand(), flagCommand(),
			decisionCommand("approve", "approve a proposal: its last approval applies it (needs approve on every key; never your own)", false),
			decisionCommand("reject", "reject a proposal (needs approve on every key)", true),
			decisionCommand("withdraw", "withdraw your own proposal", false),
			versionCommand(), completionCommand(),
		},
		Before: func(c *cli.Context) error {
			return checkOutput(c.String("output"))
		},
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() reports errors once, below
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
	}
	cli.VersionPrinter = func(c *cli.Context) { printVersion(c, false) }
	app.OnUsageError = usageErrorLine
	for _, cmd := range app.Commands {
		tidy(cmd)
	}
	return app
}

func run(args []string) int {
	app := newApp()
	var unknown error
	app.CommandNotFound = func(c *cli.Context, name string) {
		unknown = unknownCommand(c, name)
	}
	if len(args) == 0 || args[len(args)-1] != "--generate-bash-completion" {
		args = interspersed(app, args)
	}
	err := app.Run(args)
	if err == nil {
		err = unknown
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "cfgadm:", err)
	return exitCode(err)
}

// tidy gives every command one-line usage errors and required flags that
// say so in --help and, when missing, in one line (urfave/cli would print
// the whole help first).
func tidy(cmd *cli.Command) {
	cmd.OnUsageError = usageErrorLine
	var required []cli.Flag
	for _, f := range cmd.Flags {
		if r, ok := f.(cli.RequiredFlag); ok && r.IsRequired() {
			switch x := f.(type) {
			case *cli.StringFlag:
				x.Required, x.Usage = false, x.Usage+" (required)"
			case *cli.DurationFlag:
				x.Required, x.Usage = false, x.Usage+" (required)"
			case *cli.Int64Flag:
				x.Required, x.Usage = false, x.Usage+" (required)"
			case *cli.StringSliceFlag:
				x.Required, x.Usage = false, x.Usage+" (required)"
			default:
				continue
			}
			required = append(required, f)
		}
	}
	if action := cmd.Action; action != nil && len(required) > 0 {
		cmd.Action = func(c *cli.Context) error {
			for _, f := range required {
				if !c.IsSet(f.Names()[0]) {
					return usageError("%s needs --%s: %s", c.Command.FullName(), f.Names()[0],
						strings.TrimSuffix(f.(cli.DocGenerationFlag).GetUsage(), " (required)"))
				}
			}
			return action(c)
		}
	}
	for _, sub := range cmd.Subcommands {
		tidy(sub)
	}
}

func usageErrorLine(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if s := flagSuggestion(c, msg); s != "" {
		msg += "; did you mean " + s + "?"
	}
	if m := badValue.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("--%s %q: %s", m[2], m[1], valueHint(c, m[2]))
	}
	return usageError("%s (see %s --help)", msg, commandPath(c))
}

var badValue = regexp.MustCompile(`^invalid value "(.*)" for flag -+(\S+): `)

// valueHint says what a flag's value must look like.
func valueHint(c *cli.Context, name string) string {
	flags := c.App.Flags
	if c.Command != nil {
		flags = append(slices.Clone(c.Command.Flags), flags...)
	}
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f.(type) {
		case *cli.DurationFlag:
			return "not a duration: give a number with a unit, such as 90s, 30m or 2h"
		case *cli.IntFlag, *cli.Int64Flag:
			return "not a whole number"
		case *cli.BoolFlag:
			return "not true or false"
		}
	}
	return "not a valid value"
}

// commandPath is "cfgadm" and the command being run ("cfgadm maintenance on").
func commandPath(c *cli.Context) string {
	if c.Command == nil || c.Command.HelpName == "" || c.Command.Name == c.App.Name {
		return "cfgadm"
	}
	return c.Command.HelpName
}

// client is the API client of the node cfgadm talks to: --endpoint (or
// CFGADM_ENDPOINT), else the config file's context, else the local default.
func client(c *cli.Context) *api.Client {
	ctx, err := currentContext(c)
	if err != nil {
		// A broken config file is reported by the commands that need it
		// (config ...); here the default endpoint still works.
		fmt.Fprintln(os.Stderr, "cfgadm: ignoring the config file:", err)
		ctx = &clientconfig.Context{}
	}
	endpoint := ctx.Endpoint
	if c.IsSet("endpoint") {
		endpoint = c.String("endpoint")
	}
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	cl := api.NewClient(endpoint, "")
	if err := configure(ctx, cl); err != nil {
		fmt.Fprintln(os.Stderr, "cfgadm:", err)
	}
	// The token: --token-file, CFGADM_TOKEN, else the context's.
	if f := c.String("token-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cfgadm: --token-file:", err)
		}
		cl.Token = strings.TrimSpace(string(b))
	} else if t := os.Getenv("CFGADM_TOKEN"); t != "" {
		cl.Token = t
	}
	// A request that asks the node to wait must outlast the wait: a write
	// that succeeded never looks unavailable because cfgadm gave up first.
	if wait := waitFor(c); wait > 0 {
		cl.HTTP.Timeout = max(cl.HTTP.Timeout, wait+30*time.Second)
	}
	return cl
}

const defaultEndpoint = "http://127.0.0.1:7380"

// localError is a failure on this machine (a file that cannot be read or
// written): exit 1, not the exit 2 of bad input.
func localError(err error) error {
	return &cfgerr.Error{Code: cfgerr.Internal, Message: err.Error(), Err: err}
}

// usageError is a mistake in the command line itself.
func usageError(format string, args ...any) error {
	return cfgerr.Errorf(cfgerr.Invalid, "", "usage", format, args...)
}

func exitCode(err error) int {
	switch cfgerr.CodeOf(err) {
	case cfgerr.Invalid:
		return 2
	case cfgerr.NotFound:
		return 3
	case cfgerr.Conflict, cfgerr.FailedPrecondition:
		return 4
	case cfgerr.Unavailable, cfgerr.TooMany:
		return 5
	case cfgerr.Forbidden, cfgerr.Unauthenticated:
		return 6
	}
	var exit cli.ExitCoder
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if cfgerr.First(err) == nil {
		return 2 // urfave/cli's own errors are about the command line
	}
	return 1
}

// args checks the number of positional arguments.
func args(c *cli.Context, n int, names string) error {
	if c.NArg() != n {
		return usageError("%s takes %s (got %d arguments)", c.Command.Name, names, c.NArg())
	}
	return nil
}

package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
)

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	app := &cli.App{
		Name:  "cfgadm",
		Usage: "administer a cfgcluster: typed, validated, audited configuration",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "endpoint", Value: "http://127.0.0.1:7380", EnvVars: []string{"CFGADM_ENDPOINT"}, Usage: "a node's API URL"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table, json or yaml"},
			&cli.StringFlag{Name: "actor", Value: osUser(), EnvVars: []string{"CFGADM_ACTOR"}, Usage: "who makes the change, for the audit trail"},
		},
		Commands: []*cli.Command{
			getCommand(), setCommand(), deleteCommand(), listCommand(), historyCommand(), diffCommand(),
			rollbackCommand(), applyCommand(), schemaCommand(), auditCommand(), watchCommand(),
			maintenanceCommand(), instancesCommand(), restartsCommand(), rolloutCommand(),
			clusterCommand(), memberCommand(), snapshotCommand(), defragCommand(),
		},
		Before: func(c *cli.Context) error {
			switch c.String("output") {
			case "table", "json", "yaml":
				return nil
			}
			return usageError("-o must be table, json or yaml, not %q", c.String("output"))
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors once, below
		Writer:         os.Stdout,
	}
	err := app.Run(interspersed(app, args))
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "cfgadm:", err)
	return exitCode(err)
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

func client(c *cli.Context) *api.Client {
	cl := api.NewClient(c.String("endpoint"), c.String("actor"))
	// A request that asks the node to wait must outlast the wait: a write
	// that succeeded never looks unavailable because cfgadm gave up first.
	if wait := waitFor(c); wait > 0 {
		cl.HTTP.Timeout = max(cl.HTTP.Timeout, wait+30*time.Second)
	}
	return cl
}

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
	case cfgerr.Forbidden:
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

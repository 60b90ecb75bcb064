package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func setCommand() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "set a key; VALUE is parsed by the key's type (20m, true, 8, a,b,c, {\"json\": 1})",
		ArgsUsage: "KEY VALUE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"},
			&cli.Int64Flag{Name: "expect-revision", Usage: "fail unless the key is at this revision (0: has no value)"},
			waitFlag, timeoutFlag,
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 2, "KEY VALUE"); err != nil {
				return err
			}
			value := c.Args().Get(1)
			req := api.SetRequest{Text: &value, Comment: c.String("comment")}
			if c.IsSet("expect-revision") {
				rev := c.Int64("expect-revision")
				req.ExpectRevision = &rev
			}
			r, err := client(c).SetWait(c.Context, c.Args().First(), req, waitFor(c))
			if err != nil {
				return err
			}
			return showResult(c, r)
		},
	}
}

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "remove a key's value: it falls back to its default",
		ArgsUsage: "KEY",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"}},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "KEY"); err != nil {
				return err
			}
			r, err := client(c).Delete(c.Context, c.Args().First(), c.String("comment"))
			if err != nil {
				return err
			}
			return showResult(c, r)
		},
	}
}

var (
	waitFlag    = &cli.BoolFlag{Name: "wait", Usage: "wait until every live instance that reads the keys has applied the change"}
	timeoutFlag = &cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long --wait waits"}
)

// waitFor is how long to wait for the rollout: 0 without --wait.
func waitFor(c *cli.Context) time.Duration {
	if !c.Bool("wait") {
		return 0
	}
	return c.Duration("timeout")
}

// showResult prints what a write changed, and with --wait its rollout; a
// rollout that did not converge is an error (exit 4) naming who lags.
func showResult(c *cli.Context, r *api.WriteResult) error {
	if err := show(c, r, func(t *table) {
		switch {
		case r.DryRun:
			t.note("DRY RUN: nothing was written")
		case r.Revision != 0:
			t.note("revision %d", r.Revision)
		}
		for _, k := range r.Unchanged {
			t.note("%s: unchanged (it has no value to delete)", k)
		}
		if len(r.Changes) == 0 {
			return
		}
		t.header("KEY", "OLD", "NEW")
		for _, ch := range r.Changes {
			nv := text(ch.New)
			if ch.Deleted {
				nv = "(deleted: default)"
			}
			t.row(ch.Key, text(ch.Old), nv)
		}
	}); err != nil {
		return err
	}
	if r.Rollout == nil {
		return nil
	}
	if !structured(c) {
		if err := showRollout(c, r.Rollout); err != nil {
			return err
		}
	}
	return notConverged(r.Rollout)
}

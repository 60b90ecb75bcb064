package main

import (
	"fmt"
	"os"
	"strings"

	"cfgcluster/cfgerr"
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
			waitFlag, timeoutFlag, noProposeFlag, forceFlag, reasonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 2, "KEY VALUE"); err != nil {
				return err
			}
			value := c.Args().Get(1)
			req := api.SetRequest{Text: &value, Comment: c.String("comment")}
			if err := writeOptions(c, &req.Comment, &req.WriteOptions); err != nil {
				return err
			}
			if c.IsSet("expect-revision") {
				rev := c.Int64("expect-revision")
				req.ExpectRevision = &rev
			}
			cl := client(c)
			r, err := writeAndWait(c, func(wait time.Duration) (*api.WriteResult, error) {
				return cl.SetWait(c.Context, c.Args().First(), req, wait)
			})
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
		Flags: []cli.Flag{&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"},
			noProposeFlag, forceFlag, reasonFlag},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "KEY"); err != nil {
				return err
			}
			comment, opt := c.String("comment"), api.WriteOptions{}
			if err := writeOptions(c, &comment, &opt); err != nil {
				return err
			}
			r, err := client(c).DeleteWith(c.Context, c.Args().First(), comment, opt)
			if err != nil {
				return err
			}
			return showResult(c, r)
		},
	}
}

var (
	waitFlag      = &cli.BoolFlag{Name: "wait", Usage: "wait until every live instance that reads the keys has applied the change"}
	timeoutFlag   = &cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long --wait waits"}
	noProposeFlag = &cli.BoolFlag{Name: "no-propose", Usage: "fail (exit 4) rather than propose a change of keys that need approval"}
	forceFlag     = &cli.BoolFlag{Name: "force", Usage: "break-glass: apply a change of keys that need approval without it (admin; needs --reason; audited as forced)"}
	reasonFlag    = &cli.StringFlag{Name: "reason", Usage: "why a --force change cannot wait for approval (the audit record's comment)"}
)

// writeOptions reads --no-propose, --force and --reason into a write.
func writeOptions(c *cli.Context, comment *string, opt *api.WriteOptions) error {
	opt.NoPropose, opt.Force = c.Bool("no-propose"), c.Bool("force")
	if opt.Force {
		if c.String("reason") == "" {
			return usageError("--force needs --reason: why the change cannot wait for approval")
		}
		*comment = c.String("reason")
	} else if c.IsSet("reason") {
		return usageError("--reason goes with --force")
	}
	return nil
}

// waitFor is how long to wait for the rollout: 0 without --wait.
func waitFor(c *cli.Context) time.Duration {
	if !c.Bool("wait") {
		return 0
	}
	return c.Duration("timeout")
}

// writeAndWait makes a write, with --wait until its rollout converges. On a
// terminal it shows the progress (instances applied out of those that read
// the keys, stragglers named) while it waits; otherwise the node waits and
// answers once.
func writeAndWait(c *cli.Context, write func(wait time.Duration) (*api.WriteResult, error)) (*api.WriteResult, error) {
	wait := waitFor(c)
	if wait == 0 || structured(c) || !isTerminal(os.Stderr) {
		return write(wait)
	}
	r, err := write(0)
	if err != nil || r.DryRun || r.Revision == 0 {
		return r, err
	}
	cl := client(c)
	deadline := time.Now().Add(wait)
	var last *api.Rollout
	for {
		ro, err := cl.Rollout(c.Context, r.Revision)
		if err == nil {
			last = ro
			total := len(ro.Applied) + len(ro.Stragglers) + len(ro.Rejected)
			line := fmt.Sprintf("revision %d: %d of %d instances applied", r.Revision, len(ro.Applied), total)
			if n := len(ro.Stragglers); n > 0 {
				names := make([]string, 0, n)
				for _, in := range ro.Stragglers[:min(n, 3)] {
					names = append(names, in.Service+"/"+in.ID)
				}
				line += "; waiting for " + strings.Join(names, ", ")
				if n > 3 {
					line += fmt.Sprintf(" and %d more", n-3)
				}
			}
			fmt.Fprintf(os.Stderr, "\r\x1b[K%s", line)
			if ro.Converged || len(ro.Stragglers) == 0 {
				break
			}
		} else if cfgerr.CodeOf(err) != cfgerr.Unavailable {
			break
		}
		if time.Now().After(deadline) || c.Context.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr)
	if last == nil {
		return nil, cfgerr.Errorf(cfgerr.Unavailable, "", "wait", "the change was written (revision %d), but its rollout could not be read", r.Revision)
	}
	r.Rollout = last
	return r, nil
}

// showResult prints what a write changed, and with --wait its rollout; a
// rollout that did not converge is an error (exit 4) naming who lags.
func showResult(c *cli.Context, r *api.WriteResult) error {
	if p := r.Proposal; p != nil {
		return show(c, r, func(t *table) {
			t.note("proposed as %s: nothing changes until %d approver(s) other than you approve it (cfgadm approve %s; cfgadm proposal show %s)",
				p.ID, p.Needs, p.ID, p.ID)
		})
	}
	if err := show(c, r, func(t *table) {
		switch {
		case r.Forced:
			t.note("revision %d: FORCED without approval; the audit trail records it as such", r.Revision)
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

package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
)

func instancesCommand() *cli.Command {
	return &cli.Command{
		Name:      "instances",
		Usage:     "list live service instances with the revision each applied, its lag, rejections and pending restarts",
		ArgsUsage: "[SERVICE]",
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("instances takes at most one SERVICE")
			}
			l, err := client(c).Instances(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			return show(c, l, func(t *table) {
				t.empty = "no live instances"
				if c.NArg() == 1 {
					t.empty = "no live instances of " + c.Args().First()
				}
				t.header("SERVICE", "INSTANCE", "HOST", "VERSION", "APPLIED", "LAG", "REJECTED", "PENDING RESTART")
				for _, in := range l.Instances {
					t.row(in.Service, in.ID, in.Host, text(in.Version), in.Applied, in.Lag, rejections(in.Rejected), text(strings.Join(in.Pending, ",")))
				}
			})
		},
	}
}

func rejections(rs []api.Rejection) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%s@%d: %s", r.Key, r.Revision, r.Reason))
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "; ")
}

func restartsCommand() *cli.Command {
	return &cli.Command{
		Name:  "restarts",
		Usage: "list the instances that must restart to apply requires_restart keys",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "pending", Value: true, Usage: "only instances with pending restarts"}},
		Action: func(c *cli.Context) error {
			l, err := client(c).Instances(c.Context, "")
			if err != nil {
				return err
			}
			var pending []api.Instance
			for _, in := range l.Instances {
				if len(in.Pending) > 0 || !c.Bool("pending") {
					pending = append(pending, in)
				}
			}
			return show(c, pending, func(t *table) {
				t.empty = "no instance waits for a restart"
				t.header("SERVICE", "INSTANCE", "HOST", "KEYS")
				for _, in := range pending {
					t.row(in.Service, in.ID, in.Host, text(strings.Join(in.Pending, ",")))
				}
			})
		},
	}
}

func rolloutCommand() *cli.Command {
	return &cli.Command{
		Name:  "rollout",
		Usage: "show which live instances have applied a change",
		Subcommands: []*cli.Command{{
			Name:      "status",
			Usage:     "which instances that read the keys changed at REV have applied it",
			ArgsUsage: "REV",
			Action: func(c *cli.Context) error {
				if err := args(c, 1, "REV"); err != nil {
					return err
				}
				rev, err := strconv.ParseInt(c.Args().First(), 10, 64)
				if err != nil || rev <= 0 {
					return usageError("REV must be a revision number")
				}
				ro, err := client(c).Rollout(c.Context, rev)
				if err != nil {
					return err
				}
				if err := showRollout(c, ro); err != nil {
					return err
				}
				return notConverged(ro)
			},
		}},
	}
}

func showRollout(c *cli.Context, ro *api.Rollout) error {
	return show(c, ro, func(t *table) {
		t.note("revision %d, keys %s", ro.Revision, strings.Join(ro.Keys, ","))
		t.empty = "no live instance reads these keys"
		t.header("STATE", "SERVICE", "INSTANCE", "APPLIED", "DETAIL")
		for _, in := range ro.Applied {
			t.row("applied", in.Service, in.ID, in.Applied, "")
		}
		for _, in := range ro.Stragglers {
			t.row("straggler", in.Service, in.ID, in.Applied, fmt.Sprintf("lag %d", in.Lag))
		}
		for _, in := range ro.Rejected {
			t.row("rejected", in.Service, in.ID, in.Applied, rejections(in.Rejected))
		}
	})
}

// notConverged is an error (exit 4) naming the stragglers and rejections.
func notConverged(ro *api.Rollout) error {
	if ro.Converged {
		return nil
	}
	var who []string
	for _, in := range ro.Stragglers {
		who = append(who, in.Service+"/"+in.ID+" (applied "+strconv.FormatInt(in.Applied, 10)+")")
	}
	for _, in := range ro.Rejected {
		who = append(who, in.Service+"/"+in.ID+" (rejected: "+rejections(in.Rejected)+")")
	}
	return cfgerr.Errorf(cfgerr.FailedPrecondition, "", "rollout", "revision %d has not reached: %s", ro.Revision, strings.Join(who, ", "))
}

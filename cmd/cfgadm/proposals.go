package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func proposalsCommand() *cli.Command {
	return &cli.Command{
		Name:  "proposals",
		Usage: "list changes waiting for approval (and, with --state, decided ones)",
		Flags: []cli.Flag{&cli.StringFlag{Name: "state", Value: "pending", Usage: "pending, applied, rejected, withdrawn, stale, expired, or all"}},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, "no arguments"); err != nil {
				return err
			}
			state := c.String("state")
			if state == "all" {
				state = ""
			}
			l, err := client(c).Proposals(c.Context, state)
			if err != nil {
				return err
			}
			return show(c, l, func(t *table) {
				t.header("ID", "STATE", "KEYS", "AUTHOR", "APPROVALS", "EXPIRES", "COMMENT")
				for _, p := range l.Proposals {
					keys := make([]string, len(p.Changes))
					for i, ch := range p.Changes {
						keys[i] = ch.Key
					}
					t.row(p.ID, p.State, strings.Join(keys, ","), p.Author, fmt.Sprintf("%d/%d", len(p.Approvals), p.Needs),
						p.Expires.Format(time.RFC3339), text(p.Comment))
				}
			})
		},
	}
}

func proposalCommand() *cli.Command {
	return &cli.Command{
		Name:  "proposal",
		Usage: "show a proposal",
		Subcommands: []*cli.Command{{
			Name:      "show",
			Usage:     "a proposal's changes against the current values, and who approved it",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				if err := args(c, 1, "a proposal ID"); err != nil {
					return err
				}
				p, err := client(c).Proposal(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				return showProposal(c, p)
			},
		}},
	}
}

func showProposal(c *cli.Context, p *api.Proposal) error {
	return show(c, p, func(t *table) {
		t.note("proposal %s (%s) by %s: %s; %d of %d approval(s); expires %s", p.ID, p.State, p.Author, text(p.Comment),
			len(p.Approvals), p.Needs, p.Expires.Format(time.RFC3339))
		for _, a := range p.Approvals {
			t.note("approved by %s at %s: %s", a.Actor, a.Time.Format(time.RFC3339), text(a.Comment))
		}
		if p.Closed != nil && p.State != "applied" {
			t.note("%s by %s: %s", p.State, p.Closed.Actor, text(p.Closed.Comment))
		}
		if p.State == "applied" {
			t.note("applied at revision %d", p.Revision)
		}
		t.header("KEY", "CURRENT", "PROPOSED")
		for _, ch := range p.Changes {
			nv := text(ch.Value)
			if ch.Delete {
				nv = "(delete: default)"
			}
			cur := text(ch.Current)
			if ch.CurrentRevision != ch.BaseRevision {
				cur += fmt.Sprintf(" (changed since proposed: revision %d, was %d)", ch.CurrentRevision, ch.BaseRevision)
			}
			t.row(ch.Key, cur, nv)
		}
	})
}

// decisionCommand approves, rejects or withdraws a proposal.
func decisionCommand(name, usage string, needComment bool) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Required: needComment, Usage: "why, for the audit trail"}},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "a proposal ID"); err != nil {
				return err
			}
			p, err := client(c).Decide(c.Context, c.Args().First(), name, c.String("comment"))
			if err != nil {
				return err
			}
			return showProposal(c, p)
		},
	}
}

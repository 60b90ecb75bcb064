package main

import (
	"io"

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
			r, err := client(c).Set(c.Context, c.Args().First(), req)
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

// showResult prints what a write changed.
func showResult(c *cli.Context, r *api.WriteResult) error {
	return show(c, r, func(w io.Writer) {
		if r.DryRun {
			row(w, "DRY RUN: nothing was written")
		} else {
			row(w, "REVISION", r.Revision)
		}
		row(w, "KEY", "OLD", "NEW")
		for _, ch := range r.Changes {
			nv := text(ch.New)
			if ch.Deleted {
				nv = "(deleted: default)"
			}
			row(w, ch.Key, text(ch.Old), nv)
		}
	})
}

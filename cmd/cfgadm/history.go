package main

import (
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "show the revisions of a key, newest first",
		ArgsUsage: "KEY",
		Flags:     []cli.Flag{&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many revisions (at most 1000)"}},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "KEY"); err != nil {
				return err
			}
			h, err := client(c).History(c.Context, c.Args().First(), c.Int("limit"))
			if err != nil {
				return err
			}
			return show(c, h, func(w io.Writer) {
				row(w, "REVISION", "VALUE", "ACTION", "BY", "TIME", "COMMENT")
				for _, e := range h.Entries {
					v := text(e.Value)
					if e.Deleted {
						v = "(deleted)"
					}
					row(w, e.Revision, v, text(e.Action), text(e.Actor), e.Time.Format(time.RFC3339), e.Comment)
				}
			})
		},
	}
}

func diffCommand() *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "compare a key's value at two revisions (0: now)",
		ArgsUsage: "KEY REV1 REV2",
		Action: func(c *cli.Context) error {
			if err := args(c, 3, "KEY REV1 REV2"); err != nil {
				return err
			}
			from, err1 := strconv.ParseInt(c.Args().Get(1), 10, 64)
			to, err2 := strconv.ParseInt(c.Args().Get(2), 10, 64)
			if err1 != nil || err2 != nil || from < 0 || to < 0 {
				return usageError("REV1 and REV2 must be revision numbers")
			}
			d, err := client(c).Diff(c.Context, c.Args().First(), from, to)
			if err != nil {
				return err
			}
			return show(c, d, func(w io.Writer) {
				row(w, "REVISION", "VALUE", "SOURCE")
				old, oldSrc, nv, newSrc := "(none)", "-", "(none)", "-"
				if d.Old != nil {
					old, oldSrc = text(d.Old.Value), d.Old.Source
				}
				if d.New != nil {
					nv, newSrc = text(d.New.Value), d.New.Source
				}
				row(w, "- "+strconv.FormatInt(from, 10), old, oldSrc)
				row(w, "+ "+strconv.FormatInt(to, 10), nv, newSrc)
				if !d.Changed {
					row(w, "(no change)")
				}
			})
		},
	}
}

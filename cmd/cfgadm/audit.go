package main

import (
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "show the audit trail, newest first",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "only changes to this key"},
			&cli.Int64Flag{Name: "before", Usage: "only changes before this revision"},
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "at most this many records"},
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, "no arguments"); err != nil {
				return err
			}
			l, err := client(c).Audit(c.Context, c.String("key"), c.Int64("before"), c.Int("limit"))
			if err != nil {
				return err
			}
			return show(c, l, func(w io.Writer) {
				row(w, "REVISION", "TIME", "BY", "ACTION", "CHANGES", "COMMENT")
				for _, r := range l.Records {
					var ch []string
					for _, c := range r.Changes {
						ov, nv := text(c.Old), text(c.New)
						if c.OldOmitted {
							ov = "(large: see history)"
						}
						if c.NewOmitted {
							nv = "(large: see history)"
						}
						if c.Deleted {
							nv = "(deleted)"
						}
						ch = append(ch, c.Key+": "+ov+" → "+nv)
					}
					if r.SchemaChanged {
						ch = append(ch, "schema")
					}
					row(w, r.Revision, r.Time.Format(time.RFC3339), r.Actor, r.Action, strings.Join(ch, "; "), r.Comment)
				}
			})
		},
	}
}

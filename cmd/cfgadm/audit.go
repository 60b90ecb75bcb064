package main

import (
	"cfgcluster/api"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "show the audit trail, newest first, one line a change (-o wide for every value whole)",
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
			return show(c, l, func(t *table) {
				t.empty = "no changes recorded"
				if c.String("key") != "" {
					t.empty = "no changes to " + c.String("key") + " recorded"
				}
				t.header("REVISION", "TIME", "BY", "ACTION", "CHANGES", "COMMENT")
				for _, r := range l.Records {
					var ch []string
					changes := r.Changes
					if k := c.String("key"); k != "" {
						// The key asked about first: it is what the line is for.
						changes = slices.Clone(changes)
						slices.SortStableFunc(changes, func(a, b api.ChangeRecord) int { return cmp.Compare(b2i(a.Key != k), b2i(b.Key != k)) })
					}
					for _, c := range changes {
						ov, nv := cell(t, c.Old), cell(t, c.New)
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
					line := strings.Join(ch, "; ")
					if !t.wide && len(ch) > 1 {
						line = fmt.Sprintf("%s (+%d more)", ch[0], len(ch)-1) // all with -o wide or -o json
					}
					t.row(r.Revision, r.Time.Format(time.RFC3339), text(r.Actor), r.Action, line, text(r.Comment))
				}
			})
		},
	}
}

// cell is a value for a table cell: cut to 24 runes unless -o wide (a
// maintenance window's record holds a whole JSON object).
func cell(t *table, v any) string {
	s := text(v)
	if t.wide {
		return s
	}
	return cut(s, 24)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

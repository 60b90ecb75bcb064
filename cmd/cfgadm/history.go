package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:         "history",
		Usage:        "show the revisions of a key, newest first",
		ArgsUsage:    "KEY",
		Flags:        []cli.Flag{&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many revisions (at most 1000)"}},
		BashComplete: completeKeys,
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "KEY"); err != nil {
				return err
			}
			h, err := client(c).History(c.Context, c.Args().First(), c.Int("limit"))
			if err != nil {
				return suggestKeys(c, c.Args().First(), err)
			}
			return show(c, h, func(t *table) {
				t.empty = "no changes to " + c.Args().First() + " recorded: it has its default"
				t.header("REVISION", "VALUE", "ACTION", "BY", "TIME", "COMMENT")
				for _, e := range h.Entries {
					v := text(e.Value)
					if e.Deleted {
						v = "(deleted)"
					}
					t.row(e.Revision, v, text(e.Action), text(e.Actor), e.Time.Format(time.RFC3339), text(e.Comment))
				}
			})
		},
	}
}

func diffCommand() *cli.Command {
	return &cli.Command{
		Name:         "diff",
		Usage:        "compare a key's value at two revisions (0: now); lists and JSON values as a line diff",
		ArgsUsage:    "KEY REV1 REV2",
		BashComplete: completeKeys,
		Action: func(c *cli.Context) error {
			if err := args(c, 3, "KEY REV1 REV2"); err != nil {
				return err
			}
			from, err1 := strconv.ParseInt(c.Args().Get(1), 10, 64)
			to, err2 := strconv.ParseInt(c.Args().Get(2), 10, 64)
			if err1 != nil || err2 != nil || from < 0 || to < 0 {
				return usageError("REV1 and REV2 must be revision numbers (0: now)")
			}
			key := c.Args().First()
			d, err := client(c).Diff(c.Context, key, from, to)
			if err != nil {
				return suggestKeys(c, key, err)
			}
			return show(c, d, func(t *table) {
				t.note("--- %s at %s", key, revName(from))
				t.note("+++ %s at %s", key, revName(to))
				old, nv := diffLines(d.Old), diffLines(d.New)
				if !d.Changed {
					t.note("  (no change: %s)", strings.Join(nv, " "))
					return
				}
				for _, l := range lineDiff(old, nv) {
					t.note("%s", l)
				}
			})
		},
	}
}

func revName(r int64) string {
	if r == 0 {
		return "now"
	}
	return "revision " + strconv.FormatInt(r, 10)
}

// diffLines renders a value for a line diff: a list one item a line, a JSON
// object indented, anything else on one line, with where it came from.
func diffLines(v *api.Value) []string {
	if v == nil {
		return []string{"(none)"}
	}
	note := ""
	if v.Source != "cluster" {
		note = "  (" + v.Source + ")"
	}
	switch x := v.Value.(type) {
	case []any:
		out := make([]string, len(x))
		for i, item := range x {
			out[i] = "- " + text(item)
		}
		if len(out) == 0 {
			out = []string{"[]"}
		}
		out[len(out)-1] += note
		return out
	case map[string]any:
		b, _ := json.MarshalIndent(x, "", "  ")
		out := strings.Split(string(b), "\n")
		out[len(out)-1] += note
		return out
	}
	return []string{text(v.Value) + note}
}

// lineDiff is a unified-style diff of two texts: lines only in a with "-",
// only in b with "+", shared with " ". Past a million line pairs it shows a
// whole, then b whole.
func lineDiff(a, b []string) []string {
	if len(a)*len(b) > 1_000_000 {
		var out []string
		for _, l := range a {
			out = append(out, "- "+l)
		}
		for _, l := range b {
			out = append(out, "+ "+l)
		}
		return out
	}
	// lcs[i][j]: the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, "  "+a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] > lcs[i+1][j]):
			out = append(out, "+ "+b[j])
			j++
		default:
			out = append(out, "- "+a[i])
			i++
		}
	}
	return out
}

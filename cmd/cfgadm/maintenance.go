package main

import (
	"bufio"
	"fmt"

	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func maintenanceCommand() *cli.Command {
	scope := &cli.StringFlag{Name: "scope", Value: "global", Usage: "\"global\" (every service) or a service name"}
	showWindow := func(c *cli.Context, w *api.Window) error {
		return show(c, w, func(t *table) {
			t.header("SCOPE", "REASON", "BY", "START", "END")
			t.row(w.Scope, w.Reason, w.Author, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
		})
	}
	return &cli.Command{
		Name:  "maintenance",
		Usage: "open, extend, end and list maintenance windows (they close by themselves at their end)",
		Subcommands: []*cli.Command{
			{
				Name:  "on",
				Usage: "open a window now, or schedule one --at a time",
				Flags: []cli.Flag{scope,
					&cli.StringFlag{Name: "reason", Required: true, Usage: "shown to users and in the audit trail"},
					&cli.DurationFlag{Name: "for", Required: true, Usage: "how long the window lasts (30m, 2h)"},
					&cli.StringFlag{Name: "at", Usage: "open it at this time instead of now: RFC 3339 (2026-12-01T02:00:00Z) or +DURATION from now (+12h)"},
				},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, "no arguments"); err != nil {
						return err
					}
					req := api.MaintenanceRequest{Scope: c.String("scope"), Reason: c.String("reason"), Duration: c.Duration("for").String()}
					if at := c.String("at"); at != "" {
						t, err := parseAt(at, time.Now())
						if err != nil {
							return err
						}
						req.At = &t
					}
					if err := confirmGlobal(c); err != nil {
						return err
					}
					w, err := client(c).Maintenance(c.Context, req)
					if err != nil {
						return err
					}
					return showWindow(c, w)
				},
			},
			{
				Name:  "extend",
				Usage: "move the end of a scope's open window later",
				Flags: []cli.Flag{scope, &cli.DurationFlag{Name: "by", Required: true, Usage: "how much longer"}},
				Action: func(c *cli.Context) error {
					w, err := client(c).ExtendMaintenance(c.Context, c.String("scope"), c.Duration("by"))
					if err != nil {
						return err
					}
					return showWindow(c, w)
				},
			},
			{
				Name:  "off",
				Usage: "end a scope's open window now",
				Flags: []cli.Flag{scope},
				Action: func(c *cli.Context) error {
					w, err := client(c).EndMaintenance(c.Context, c.String("scope"))
					if err != nil {
						return err
					}
					return showWindow(c, w)
				},
			},
			{
				Name:      "cancel",
				Usage:     "cancel a scheduled window before it opens (its ID is in maintenance list)",
				ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("give the scheduled window's ID (cfgadm maintenance list shows it)")
					}
					if err := client(c).CancelMaintenance(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "cancelled scheduled window %s\n", c.Args().First())
					return nil
				},
			},
			{
				Name:  "status",
				Usage: "show a scope's window",
				Flags: []cli.Flag{scope},
				Action: func(c *cli.Context) error {
					s, err := client(c).MaintenanceStatus(c.Context, c.String("scope"))
					if err != nil {
						return err
					}
					return show(c, s, func(t *table) {
						if !s.Open {
							t.note("%s: no window open", s.Scope)
							return
						}
						t.header("SCOPE", "REASON", "BY", "START", "END")
						t.row(s.Scope, s.Window.Reason, s.Window.Author, s.Window.Start.Format(time.RFC3339), s.Window.End.Format(time.RFC3339))
					})
				},
			},
			{
				Name:  "list",
				Usage: "list open and scheduled windows",
				Action: func(c *cli.Context) error {
					l, err := client(c).MaintenanceList(c.Context)
					if err != nil {
						return err
					}
					return show(c, l, func(t *table) {
						t.empty = "no maintenance window open or scheduled"
						t.header("STATE", "ID", "SCOPE", "REASON", "BY", "START", "END")
						for _, w := range l.Open {
							t.row("open", w.ID, w.Scope, w.Reason, w.Author, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
						}
						for _, w := range l.Scheduled {
							t.row("scheduled", w.ID, w.Scope, w.Reason, w.Author, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
						}
					})
				},
			},
		},
	}
}

// confirmGlobal: a window over every service is asked for on purpose. With
// --scope unset (its default is global), a terminal is asked to confirm,
// and anything else is refused until --scope global is given.
func confirmGlobal(c *cli.Context) error {
	if c.IsSet("scope") {
		return nil
	}
	if !isTerminal(os.Stdin) || !isTerminal(os.Stderr) {
		return usageError("this window would cover every service: say --scope global to mean it, or --scope SERVICE")
	}
	fmt.Fprint(os.Stderr, "This window covers every service (--scope global). Open it? [y/N] ")
	answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return usageError("not confirmed: nothing was opened")
	}
	return nil
}

// parseAt reads --at: an RFC 3339 time, or +DURATION after now.
func parseAt(at string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutPrefix(at, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return time.Time{}, usageError("--at %q: after + give a duration, such as +12h or +90m", at)
		}
		return now.Add(dur), nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}, usageError("--at %q is not an RFC 3339 time, such as 2026-12-01T02:00:00Z, or +DURATION, such as +12h", at)
	}
	return t, nil
}

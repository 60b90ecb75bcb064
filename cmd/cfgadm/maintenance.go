package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func maintenanceCommand() *cli.Command {
	scope := &cli.StringFlag{Name: "scope", Value: "global", Usage: "\"global\" or a service name"}
	showWindow := func(c *cli.Context, w *api.Window) error {
		return show(c, w, func(out io.Writer) {
			row(out, "SCOPE", "REASON", "BY", "START", "END")
			row(out, w.Scope, w.Reason, w.Author, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
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
					&cli.TimestampFlag{Name: "at", Layout: time.RFC3339, Usage: "open it at this time (RFC 3339) instead of now"},
				},
				Action: func(c *cli.Context) error {
					req := api.MaintenanceRequest{Scope: c.String("scope"), Reason: c.String("reason"), Duration: c.Duration("for").String(), At: c.Timestamp("at")}
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
					return show(c, s, func(out io.Writer) {
						if !s.Open {
							row(out, s.Scope, "no window open")
							return
						}
						row(out, "SCOPE", "REASON", "BY", "START", "END")
						row(out, s.Scope, s.Window.Reason, s.Window.Author, s.Window.Start.Format(time.RFC3339), s.Window.End.Format(time.RFC3339))
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
					return show(c, l, func(out io.Writer) {
						row(out, "STATE", "ID", "SCOPE", "REASON", "BY", "START", "END")
						for _, w := range l.Open {
							row(out, "open", w.ID, w.Scope, w.Reason, w.Author, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
						}
						for _, w := range l.Scheduled {
							row(out, "scheduled", w.ID, w.Scope, w.Reason, w.Author, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
						}
					})
				},
			},
		},
	}
}

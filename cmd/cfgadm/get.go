package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "show a key's value, its default and where the value came from",
		ArgsUsage: "KEY",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "revision", Usage: "the value at this revision"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "then print the key's changes as they happen"},
			&cli.BoolFlag{Name: "reveal", Usage: "show a sensitive value in clear (needs read-sensitive on the key; the read is audited)"},
			&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why you reveal it, for the audit trail"},
			retryForFlag,
		},
		BashComplete: completeKeys,
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "KEY"); err != nil {
				return err
			}
			key := c.Args().First()
			var v *api.Value
			var err error
			if c.Bool("reveal") {
				v, err = client(c).Reveal(c.Context, key, c.Int64("revision"), c.String("comment"))
			} else {
				v, err = client(c).Get(c.Context, key, c.Int64("revision"))
			}
			if err != nil {
				return suggestKeys(c, key, err)
			}
			if err := show(c, v, func(t *table) {
				t.header("KEY", "VALUE", "DEFAULT", "SOURCE", "REVISION", "BY", "COMMENT")
				if t.wide {
					t.head = append(t.head, "TYPE", "TIME")
				}
				cells := []any{v.Key, text(v.Value), text(v.Default), v.Source, dash(v.Revision), text(v.Actor), text(v.Comment)}
				if t.wide {
					at := "-"
					if v.Time != nil {
						at = v.Time.Format(time.RFC3339)
					}
					cells = append(cells, v.Type, at)
				}
				t.row(cells...)
			}); err != nil {
				return err
			}
			if !c.Bool("watch") {
				return nil
			}
			return watchChanges(c, key, v.Revision, func(key string) bool { return key == c.Args().First() })
		},
	}
}

// dash shows 0 (none) as "-".
func dash(n int64) any {
	if n == 0 {
		return "-"
	}
	return n
}

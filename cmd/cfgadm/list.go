package main

import (
	"github.com/urfave/cli/v2"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:         "list",
		Usage:        "show every key under a prefix: stored values, defaults for keys never set, and keys with neither as unset",
		ArgsUsage:    "[PREFIX]",
		Flags:        []cli.Flag{&cli.Int64Flag{Name: "revision", Usage: "the values at this revision"}},
		BashComplete: completeKeys,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("list takes at most one PREFIX")
			}
			prefix := c.Args().First()
			l, err := client(c).List(c.Context, prefix, c.Int64("revision"))
			if err != nil {
				return err
			}
			if len(l.Values) == 0 && prefix != "" {
				return suggestPrefix(c, prefix)
			}
			return show(c, l, func(t *table) {
				t.empty = "no keys: the schema has none"
				t.header("KEY", "VALUE", "TYPE", "SOURCE", "REVISION")
				if t.wide {
					t.head = append(t.head, "DEFAULT", "BY", "COMMENT")
				}
				for _, v := range l.Values {
					cells := []any{v.Key, text(v.Value), v.Type, v.Source, dash(v.Revision)}
					if v.Source == "unset" {
						cells[1] = "(unset)"
					}
					if t.wide {
						cells = append(cells, text(v.Default), text(v.Actor), text(v.Comment))
					}
					t.row(cells...)
				}
			})
		},
	}
}

package main

import (
	"io"

	"github.com/urfave/cli/v2"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "show every key under a prefix, with defaults for keys never set",
		ArgsUsage: "[PREFIX]",
		Flags:     []cli.Flag{&cli.Int64Flag{Name: "revision", Usage: "the values at this revision"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("list takes at most one PREFIX")
			}
			l, err := client(c).List(c.Context, c.Args().First(), c.Int64("revision"))
			if err != nil {
				return err
			}
			return show(c, l, func(w io.Writer) {
				row(w, "KEY", "VALUE", "TYPE", "SOURCE", "REVISION")
				for _, v := range l.Values {
					row(w, v.Key, text(v.Value), v.Type, v.Source, v.Revision)
				}
			})
		},
	}
}

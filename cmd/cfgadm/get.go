package main

import (
	"io"

	"github.com/urfave/cli/v2"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "show a key's value and where it came from",
		ArgsUsage: "KEY",
		Flags:     []cli.Flag{&cli.Int64Flag{Name: "revision", Usage: "the value at this revision"}},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, "KEY"); err != nil {
				return err
			}
			v, err := client(c).Get(c.Context, c.Args().First(), c.Int64("revision"))
			if err != nil {
				return err
			}
			return show(c, v, func(w io.Writer) {
				row(w, "KEY", "VALUE", "TYPE", "SOURCE", "REVISION", "BY", "COMMENT")
				row(w, v.Key, text(v.Value), v.Type, v.Source, v.Revision, text(v.Actor), v.Comment)
			})
		},
	}
}

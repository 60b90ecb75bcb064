package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "print changes under a prefix as they happen, until interrupted",
		ArgsUsage: "[PREFIX]",
		Flags:     []cli.Flag{&cli.Int64Flag{Name: "since", Usage: "first replay the changes after this revision"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("watch takes at most one PREFIX")
			}
			out := c.App.Writer
			if out == nil {
				out = os.Stdout
			}
			asJSON := c.String("output") != "table"
			return client(c).Watch(c.Context, c.Args().First(), c.Int64("since"), func(b api.WatchBatch) error {
				if asJSON {
					return json.NewEncoder(out).Encode(b)
				}
				for _, e := range b.Events {
					fmt.Fprintf(out, "%d\t%s\t%s\t%s → %s\t%s\n", b.Revision, e.Kind, e.Key, text(e.Old), text(e.New), e.Actor)
				}
				return nil
			}, func(r api.WatchResync) error {
				fmt.Fprintf(os.Stderr, "cfgadm: resync (%s): changes were missed; state is current as of revision %d\n", r.Reason, r.Revision)
				return nil
			})
		},
	}
}

package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "write a key's (or every key's) value at a past revision as a new change",
		ArgsUsage: "KEY --to REV | --all --to REV",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "to", Usage: "the revision to roll back to", Required: true},
			&cli.BoolFlag{Name: "all", Usage: "roll back every key"},
			&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"},
			noProposeFlag, forceFlag, reasonFlag,
		},
		Action: func(c *cli.Context) error {
			req := api.RollbackRequest{All: c.Bool("all"), To: c.Int64("to"), Comment: c.String("comment")}
			if err := writeOptions(c, &req.Comment, &req.WriteOptions); err != nil {
				return err
			}
			if req.All {
				if err := args(c, 0, "no KEY with --all"); err != nil {
					return err
				}
			} else {
				if err := args(c, 1, "KEY (or --all)"); err != nil {
					return err
				}
				req.Key = c.Args().First()
			}
			r, err := client(c).Rollback(c.Context, req)
			if err != nil {
				return err
			}
			if req.All && len(r.Changes) == 0 && !structured(c) {
				fmt.Fprintf(stdout(c), "nothing to roll back: every value is as it was at revision %d\n", req.To)
				return nil
			}
			return showResult(c, r)
		},
	}
}

package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
)

func schemaCommand() *cli.Command {
	fileFlag := &cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "schema document, YAML or JSON (- for stdin)"}
	return &cli.Command{
		Name:  "schema",
		Usage: "show, validate or apply the schema",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "print the active schema document",
				Action: func(c *cli.Context) error {
					s, err := client(c).Schema(c.Context)
					if err != nil {
						return err
					}
					return show(c, s, func(t *table) {
						t.note("# revision %d\n%s", s.Revision, strings.TrimRight(s.Document, "\n"))
					})
				},
			},
			{
				Name:  "validate",
				Usage: "check a schema document against the values stored now; writes nothing",
				Flags: []cli.Flag{fileFlag},
				Action: func(c *cli.Context) error {
					doc, err := readFile(c.String("file"))
					if err != nil {
						return err
					}
					v, err := client(c).ValidateSchema(c.Context, api.SchemaRequest{Document: string(doc)})
					if err != nil {
						return err
					}
					if err := show(c, v, func(t *table) {
						if v.Valid {
							t.note("valid: the schema fits every stored value and rule")
						}
					}); err != nil {
						return err
					}
					if !v.Valid {
						return problems(v.Problems)
					}
					return nil
				},
			},
			{
				Name:  "apply",
				Usage: "replace the schema, if every stored value and rule holds under it",
				Flags: []cli.Flag{fileFlag, &cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"},
					noProposeFlag, forceFlag, reasonFlag},
				Action: func(c *cli.Context) error {
					doc, err := readFile(c.String("file"))
					if err != nil {
						return err
					}
					req := api.SchemaRequest{Document: string(doc), Comment: c.String("comment")}
					if err := writeOptions(c, &req.Comment, &req.WriteOptions); err != nil {
						return err
					}
					r, err := client(c).ApplySchema(c.Context, req)
					if err != nil {
						return err
					}
					if r.Proposal != nil {
						return showResult(c, r)
					}
					return show(c, r, func(t *table) { t.note("schema applied at revision %d", r.Revision) })
				},
			},
		},
	}
}

// problems is an error listing every problem, one a line.
func problems(ps []api.Error) error {
	msg := fmt.Sprintf("%d problem(s):", len(ps))
	for _, p := range ps {
		msg += "\n  " + (&cfgerr.Error{Key: p.Key, Field: p.Field, Message: p.Message}).Error()
	}
	return &cfgerr.Error{Code: cfgerr.Invalid, Message: msg}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/schema"
)

// changeFile is the format of apply -f:
//
//	comment: raise the worker pool for the sale
//	set:
//	  taskqueue.max_workers: 32
//	  session.idle_timeout: 20m
//	delete: [site.banner]
type changeFile struct {
	Comment string         `json:"comment"`
	Set     map[string]any `json:"set"`
	Delete  []string       `json:"delete"`
}

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "apply a file of changes as one transaction: every change or none",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "YAML or JSON file with set: and delete: (- for stdin)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "validate and show the changes, write nothing"},
			&cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail (overrides the file's)"},
			waitFlag, timeoutFlag, noProposeFlag, forceFlag, reasonFlag,
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, "no arguments"); err != nil {
				return err
			}
			f, err := readChangeFile(c.String("file"))
			if err != nil {
				return err
			}
			req := api.ApplyRequest{Comment: f.Comment, DryRun: c.Bool("dry-run")}
			if c.IsSet("comment") {
				req.Comment = c.String("comment")
			}
			if err := writeOptions(c, &req.Comment, &req.WriteOptions); err != nil {
				return err
			}
			keys := make([]string, 0, len(f.Set))
			for k := range f.Set {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				req.Changes = append(req.Changes, api.Change{Key: k, Value: f.Set[k]})
			}
			for _, k := range f.Delete {
				req.Changes = append(req.Changes, api.Change{Key: k, Delete: true})
			}
			if len(req.Changes) == 0 {
				return usageError("%s has no changes: give set: and/or delete:", c.String("file"))
			}
			cl := client(c)
			r, err := writeAndWait(c, func(wait time.Duration) (*api.WriteResult, error) {
				return cl.ApplyWait(c.Context, req, wait)
			})
			if err != nil {
				return err
			}
			return showResult(c, r)
		},
	}
}

func readFile(name string) ([]byte, error) {
	if name == "-" {
		var b bytes.Buffer
		if _, err := b.ReadFrom(os.Stdin); err != nil {
			return nil, localError(err)
		}
		return b.Bytes(), nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, localError(err)
	}
	return b, nil
}

func readChangeFile(name string) (*changeFile, error) {
	data, err := readFile(name)
	if err != nil {
		return nil, err
	}
	js, err := schema.YAMLToJSON(data)
	if err != nil {
		return nil, usageError("%s: %v", name, err)
	}
	var f changeFile
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	d.UseNumber()
	if err := d.Decode(&f); err != nil {
		return nil, usageError("%s: %v (the file has comment:, set: and delete:)", name, fmt.Sprint(err))
	}
	return &f, nil
}

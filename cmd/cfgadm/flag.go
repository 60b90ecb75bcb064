package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/flags"
	"cfgcluster/schema"
)

// Feature flags are keys under flags. ("flags.new-checkout") whose values
// are flagd's definitions; every change of one is an audited, validated
// write like any other (history, diff, rollback and approvals included).
func flagCommand() *cli.Command {
	comment := &cli.StringFlag{Name: "comment", Aliases: []string{"m"}, Usage: "why, for the audit trail"}
	return &cli.Command{
		Name:  "flag",
		Usage: "feature flags in flagd's format: create, change, evaluate, import and export them",
		Subcommands: []*cli.Command{
			{
				Name: "list", Usage: "list the flags: state, variants, default variant, targeting",
				Action: flagList,
			},
			{
				Name: "get", Usage: "show a flag's definition", ArgsUsage: "KEY",
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "KEY"); err != nil {
						return err
					}
					v, err := client(c).Get(c.Context, flagKeyOf(c.Args().First()), 0)
					if err != nil {
						return err
					}
					if structured(c) {
						return show(c, v.Value, nil)
					}
					return writeJSON(stdout(c), v.Value)
				},
			},
			{
				Name: "create", Usage: "create a flag (enabled); it must not exist yet", ArgsUsage: "KEY",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "variants", Required: true, Usage: "NAME=VALUE,... (values are JSON: true, 10, \"blue\", {\"a\": 1}; a bare word is a string)"},
					&cli.StringFlag{Name: "default", Usage: "the default variant (none: callers get their code default)"},
					comment,
				},
				Action: flagCreate,
			},
			{
				Name: "set", Usage: "replace a flag's definition with a flagd definition from a file (- for stdin)", ArgsUsage: "KEY",
				Flags: []cli.Flag{&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "the definition (JSON)"}, comment},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "KEY"); err != nil {
						return err
					}
					data, err := readFile(c.String("file"))
					if err != nil {
						return err
					}
					text := string(data)
					r, err := client(c).Set(c.Context, flagKeyOf(c.Args().First()), api.SetRequest{Text: &text, Comment: c.String("comment")})
					if err != nil {
						return err
					}
					return showResult(c, r)
				},
			},
			flagStateCommand("enable", flags.Enabled, comment),
			flagStateCommand("disable", flags.Disabled, comment),
			{
				Name: "rollout", Usage: "serve a variant to a percentage of targeting keys (fractional), the other variant to the rest", ArgsUsage: "KEY",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "variant", Required: true, Usage: "the variant to roll out"},
					&cli.IntFlag{Name: "percent", Required: true, Usage: "0 to 100"},
					&cli.StringFlag{Name: "else", Usage: "what the rest get (default: the default variant)"},
					comment,
				},
				Action: flagRollout,
			},
			{
				Name: "eval", Usage: "evaluate a flag for an evaluation context, as a service would", ArgsUsage: "KEY",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "context", Value: "{}", Usage: `the evaluation context (JSON): {"targetingKey": "u1", "email": "a@b.c"}`}},
				Action: flagEval,
			},
			{
				Name: "import", Usage: "import a flagd flag file, every flag and the shared evaluators in one change",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Required: true, Usage: "the flag file (- for stdin)"}, comment},
				Action: flagImport,
			},
			{
				Name: "export", Usage: "print every flag as one flagd flag file",
				Action: flagExport,
			},
			{
				Name: "usage", Usage: "each flag's evaluations by the live instances, by variant (as they report them, about once a minute)",
				Action: flagUsage,
			},
			{
				Name: "stale", Usage: "the flags no live instance has evaluated for --days days: candidates to remove",
				Flags:  []cli.Flag{&cli.IntFlag{Name: "days", Value: 30, Usage: "days without an evaluation"}},
				Action: flagStale,
			},
			{
				Name: "delete", Usage: "delete a flag", ArgsUsage: "KEY", Flags: []cli.Flag{comment},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "KEY"); err != nil {
						return err
					}
					r, err := client(c).Delete(c.Context, flagKeyOf(c.Args().First()), c.String("comment"))
					if err != nil {
						return err
					}
					return showResult(c, r)
				},
			},
		},
	}
}

// flagKeyOf is a flag's key in the store.
func flagKeyOf(key string) string { return schema.FlagsNamespace + "." + key }

// flagDef reads a stored definition back as flagd's type.
func flagDef(v any) (flags.Definition, error) {
	var d flags.Definition
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, &d)
	}
	return d, err
}

func flagList(c *cli.Context) error {
	l, err := client(c).List(c.Context, schema.FlagsNamespace+".", 0)
	if err != nil {
		return err
	}
	return show(c, l, func(t *table) {
		t.header("KEY", "STATE", "VARIANTS", "DEFAULT", "TARGETING", "REVISION", "BY")
		t.empty = "no flags (create one: cfgadm flag create KEY --variants on=true,off=false --default off)"
		for _, v := range l.Values {
			key, _ := schema.FlagKeyOf(v.Key)
			d, err := flagDef(v.Value)
			if err != nil {
				continue
			}
			var variants []string
			for _, name := range slices.Sorted(maps.Keys(d.Variants)) {
				b, _ := json.Marshal(d.Variants[name])
				variants = append(variants, name+"="+string(b))
			}
			def, targeting := "-", "-"
			if d.DefaultVariant != nil {
				def = *d.DefaultVariant
			}
			if len(d.Targeting) > 0 && string(d.Targeting) != "{}" {
				targeting = "yes"
			}
			t.row(key, d.State, strings.Join(variants, ","), def, targeting, v.Revision, text(v.Actor))
		}
	})
}

// parseVariants reads NAME=VALUE,...: a value that reads as JSON is that
// JSON, anything else a string.
func parseVariants(s string) (map[string]any, error) {
	out := map[string]any{}
	for _, part := range splitTopLevel(s) {
		name, raw, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, usageError("--variants: %q is not NAME=VALUE", part)
		}
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil || v == nil {
			v = raw
		}
		out[name] = v
	}
	return out, nil
}

// splitTopLevel splits at the commas outside braces, brackets and quotes.
func splitTopLevel(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' && (i == 0 || s[i-1] != '\\'):
			quoted = !quoted
		case quoted:
		case ch == '{' || ch == '[':
			depth++
		case ch == '}' || ch == ']':
			depth--
		case ch == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func flagCreate(c *cli.Context) error {
	if err := args(c, 1, "KEY"); err != nil {
		return err
	}
	variants, err := parseVariants(c.String("variants"))
	if err != nil {
		return err
	}
	d := flags.Definition{State: flags.Enabled, Variants: variants}
	if c.IsSet("default") {
		def := c.String("default")
		d.DefaultVariant = &def
	}
	none := int64(0)
	r, err := client(c).Set(c.Context, flagKeyOf(c.Args().First()), api.SetRequest{Value: d, Comment: c.String("comment"), ExpectRevision: &none})
	if err != nil {
		return err
	}
	return showResult(c, r)
}

// changeFlag reads a flag, changes its definition and writes it back,
// guarded by the revision it read: a change made in between fails the
// write rather than being lost.
func changeFlag(c *cli.Context, change func(d *flags.Definition) error) error {
	if err := args(c, 1, "KEY"); err != nil {
		return err
	}
	key := flagKeyOf(c.Args().First())
	cl := client(c)
	v, err := cl.Get(c.Context, key, 0)
	if err != nil {
		return err
	}
	d, err := flagDef(v.Value)
	if err != nil {
		return err
	}
	if err := change(&d); err != nil {
		return err
	}
	rev := v.Revision
	r, err := cl.Set(c.Context, key, api.SetRequest{Value: d, Comment: c.String("comment"), ExpectRevision: &rev})
	if err != nil {
		return err
	}
	return showResult(c, r)
}

func flagStateCommand(name, state string, comment cli.Flag) *cli.Command {
	return &cli.Command{
		Name: name, Usage: fmt.Sprintf("set a flag's state to %s", state), ArgsUsage: "KEY", Flags: []cli.Flag{comment},
		Action: func(c *cli.Context) error {
			return changeFlag(c, func(d *flags.Definition) error {
				d.State = state
				return nil
			})
		},
	}
}

func flagRollout(c *cli.Context) error {
	p := c.Int("percent")
	if p < 0 || p > 100 {
		return usageError("--percent is %d: from 0 to 100", p)
	}
	return changeFlag(c, func(d *flags.Definition) error {
		rest := c.String("else")
		if rest == "" {
			if d.DefaultVariant == nil {
				return usageError("the flag has no default variant: say what the rest get with --else VARIANT")
			}
			rest = *d.DefaultVariant
		}
		rule := map[string]any{"fractional": []any{[]any{c.String("variant"), p}, []any{rest, 100 - p}}}
		d.Targeting, _ = json.Marshal(rule)
		return nil
	})
}

func flagEval(c *cli.Context) error {
	if err := args(c, 1, "KEY"); err != nil {
		return err
	}
	var evalCtx map[string]any
	if err := json.Unmarshal([]byte(c.String("context")), &evalCtx); err != nil {
		return usageError("--context is not a JSON object: %v", err)
	}
	ev, err := client(c).EvaluateFlag(c.Context, c.Args().First(), evalCtx)
	if err != nil {
		return err
	}
	return show(c, ev, func(t *table) {
		if ev.ErrorCode != "" {
			t.header("KEY", "ERROR", "DETAILS")
			t.row(ev.Key, ev.ErrorCode, ev.ErrorDetails)
			return
		}
		value := "(the caller's default)"
		if ev.Value != nil {
			value = string(ev.Value)
		}
		t.header("KEY", "VALUE", "VARIANT", "REASON")
		t.row(ev.Key, value, text(ev.Variant), ev.Reason)
	})
}

func flagImport(c *cli.Context) error {
	data, err := readFile(c.String("file"))
	if err != nil {
		return err
	}
	set, err := flags.ParseFile(data)
	if err != nil {
		return usageError("%s: %v", c.String("file"), err)
	}
	if problems := set.Problems(); len(problems) > 0 {
		var lines []string
		for _, p := range problems {
			lines = append(lines, p.Error())
		}
		return usageError("%s has %d problem(s); nothing was imported:\n  %s", c.String("file"), len(problems), strings.Join(lines, "\n  "))
	}
	var file flags.File
	json.Unmarshal(data, &file) // parsed above
	req := api.ApplyRequest{Comment: c.String("comment")}
	if len(file.Evaluators) > 0 || len(file.Metadata) > 0 {
		req.Changes = append(req.Changes, api.Change{Key: schema.FlagsNamespace, Value: flags.Shared{Evaluators: file.Evaluators, Metadata: file.Metadata}})
	}
	for _, key := range slices.Sorted(maps.Keys(file.Flags)) {
		var def any
		json.Unmarshal(file.Flags[key], &def)
		req.Changes = append(req.Changes, api.Change{Key: flagKeyOf(key), Value: def})
	}
	r, err := client(c).Apply(c.Context, req)
	if err != nil {
		return err
	}
	return showResult(c, r)
}

func flagExport(c *cli.Context) error {
	l, err := client(c).List(c.Context, schema.FlagsNamespace, 0)
	if err != nil {
		return err
	}
	out := map[string]any{"$schema": "https://flagd.dev/schema/v0/flags.json"}
	defs := map[string]any{}
	for _, v := range l.Values {
		if v.Key == schema.FlagsNamespace {
			if m, ok := v.Value.(map[string]any); ok {
				maps.Copy(out, m)
			}
		} else if key, ok := schema.FlagKeyOf(v.Key); ok && v.Value != nil {
			defs[key] = v.Value
		}
	}
	out["flags"] = defs
	return writeJSON(stdout(c), out)
}

func flagUsage(c *cli.Context) error {
	l, err := client(c).FlagUsage(c.Context)
	if err != nil {
		return err
	}
	return show(c, l, func(t *table) {
		t.header("FLAG", "EVALUATIONS", "BY VARIANT", "INSTANCES", "LAST EVALUATED")
		t.empty = "no flags"
		for _, u := range l.Flags {
			var total uint64
			var by []string
			for _, v := range slices.Sorted(maps.Keys(u.Evaluations)) {
				total += u.Evaluations[v]
				name := v
				if name == "" {
					name = "(caller's default)"
				}
				by = append(by, fmt.Sprintf("%s=%d", name, u.Evaluations[v]))
			}
			last := "never"
			if u.Last != nil {
				last = u.Last.Format(time.RFC3339)
			}
			t.row(u.Flag, total, dashIfEmpty(strings.Join(by, ",")), u.Instances, last)
		}
	})
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func flagStale(c *cli.Context) error {
	days := c.Int("days")
	if days < 0 {
		return usageError("--days is %d: 0 or more", days)
	}
	l, err := client(c).FlagUsage(c.Context)
	if err != nil {
		return err
	}
	cut := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
	stale := api.FlagUsageList{Flags: []api.FlagUsage{}}
	for _, u := range l.Flags {
		if u.Last == nil || u.Last.Before(cut) {
			stale.Flags = append(stale.Flags, u)
		}
	}
	return show(c, stale, func(t *table) {
		t.header("FLAG", "LAST EVALUATED")
		t.empty = fmt.Sprintf("every flag was evaluated by a live instance within %d days", days)
		for _, u := range stale.Flags {
			last := "never (by a live instance)"
			if u.Last != nil {
				last = u.Last.Format(time.RFC3339)
			}
			t.row(u.Flag, last)
		}
	})
}

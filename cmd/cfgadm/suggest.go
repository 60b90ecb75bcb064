package main

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"

	"cfgcluster/cfgerr"
)

// nearest returns up to n candidates close to s (Jaro-Winkler similarity of
// at least 0.8, or sharing its start), closest first.
func nearest(candidates []string, s string, n int) []string {
	type scored struct {
		name  string
		score float64
	}
	var out []scored
	for _, c := range candidates {
		if c == s {
			continue
		}
		score := smetrics.JaroWinkler(c, s, 0.7, 4)
		if score >= 0.8 || (len(s) >= 3 && strings.HasPrefix(c, s)) {
			out = append(out, scored{c, score})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].score > out[j].score })
	names := make([]string, 0, n)
	for i := 0; i < len(out) && i < n; i++ {
		names = append(names, out[i].name)
	}
	return names
}

// unknownCommand is the error for a command cfgadm does not have, with the
// nearest it has.
func unknownCommand(c *cli.Context, name string) error {
	cmds := c.App.Commands
	if c.Command != nil && len(c.Command.Subcommands) > 0 {
		cmds = c.Command.Subcommands
	}
	where := commandPath(c)
	var names []string
	for _, cmd := range cmds {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	msg := "unknown command " + quote(name)
	if s := nearest(names, name, 2); len(s) > 0 {
		msg += ": did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError("%s (see %s --help)", msg, where)
}

var undefinedFlag = regexp.MustCompile(`flag provided but not defined: -+(\S+)`)

// flagSuggestion names the flag nearest to an undefined one in msg.
func flagSuggestion(c *cli.Context, msg string) string {
	m := undefinedFlag.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	var names []string
	flags := c.App.Flags
	if c.Command != nil {
		flags = append(slices.Clone(c.Command.Flags), flags...)
	}
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	if s := nearest(names, m[1], 1); len(s) > 0 {
		return "--" + s[0]
	}
	return ""
}

// keyNames asks the node for every key in its schema (a short wait: it
// only improves an error or a completion).
func keyNames(c *cli.Context) []string {
	ctx, cancel := context.WithTimeout(c.Context, 3*time.Second)
	defer cancel()
	l, err := client(c).List(ctx, "", 0)
	if err != nil {
		return nil
	}
	names := make([]string, len(l.Values))
	for i, v := range l.Values {
		names[i] = v.Key
	}
	return names
}

// suggestKeys adds the nearest schema keys to an error about a key the
// schema lacks.
func suggestKeys(c *cli.Context, key string, err error) error {
	e := cfgerr.First(err)
	if e == nil || e.Code != cfgerr.NotFound || !strings.Contains(e.Message, "not in the schema") {
		return err
	}
	if s := nearest(keyNames(c), key, 3); len(s) > 0 {
		out := *e
		out.Message += "; did you mean " + strings.Join(s, ", ") + "?"
		return &out
	}
	return err
}

// suggestPrefix is the error for a prefix no schema key has, with the
// nearest prefixes that some have.
func suggestPrefix(c *cli.Context, prefix string) error {
	seen := map[string]bool{}
	var prefixes []string
	for _, k := range keyNames(c) {
		for i := range len(k) {
			if k[i] == '.' && !seen[k[:i+1]] {
				seen[k[:i+1]] = true
				prefixes = append(prefixes, k[:i+1])
			}
		}
		if !seen[k] {
			seen[k] = true
			prefixes = append(prefixes, k)
		}
	}
	msg := "no key in the schema starts with " + quote(prefix)
	if s := nearest(prefixes, prefix, 3); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, ", ") + "?"
	}
	return cfgerr.Errorf(cfgerr.NotFound, "", "prefix", "%s", msg)
}

func quote(s string) string { return `"` + s + `"` }

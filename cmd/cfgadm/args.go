package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed lets flags follow positional arguments, as admins type them
// (cfgadm set KEY VALUE --comment C), which urfave/cli/v2 does not parse on
// its own: it moves each command's flags, with their values, ahead of its
// positional arguments. Everything after "--" stays as it is.
func interspersed(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	var global []string // app flags found after the command
	flags, cmds := app.Flags, app.Commands
	rest := args[1:]
	for {
		// Copy this level's leading flags, then find the (sub)command.
		i := 0
		for i < len(rest) && strings.HasPrefix(rest[i], "-") && rest[i] != "--" {
			i += 1 + takesValue(flags, rest[i])
		}
		i = min(i, len(rest))
		out = append(out, rest[:i]...)
		rest = rest[i:]
		if len(rest) == 0 || rest[0] == "--" {
			return append(out, rest...)
		}
		cmd := find(cmds, rest[0])
		if cmd == nil {
			return append(out, rest...)
		}
		out = append(out, rest[0])
		rest = rest[1:]
		if len(cmd.Subcommands) > 0 {
			flags, cmds = cmd.Flags, cmd.Subcommands
			continue
		}
		var fl, pos []string
		sep := false // the user's "--": what follows is positional
		for j := 0; j < len(rest); j++ {
			a := rest[j]
			if a == "--" {
				pos, sep = append(pos, rest[j+1:]...), true
				break
			}
			if strings.HasPrefix(a, "-") && len(a) > 1 && !negative(a) {
				defs, to := cmd.Flags, &fl
				if !defined(cmd.Flags, a) && defined(app.Flags, a) {
					defs, to = app.Flags, &global
				}
				end := min(j+1+takesValue(defs, a), len(rest))
				*to = append(*to, rest[j:end]...)
				j = end - 1
				continue
			}
			pos = append(pos, a)
		}
		out = append(out, fl...)
		if sep || slices.ContainsFunc(pos, func(p string) bool { return strings.HasPrefix(p, "-") }) {
			out = append(out, "--") // -5 is a value, not a flag
		}
		out = append(out, pos...)
		return append(append([]string{out[0]}, global...), out[1:]...)
	}
}

// negative reports whether a token is a negative number or duration
// (-5, -0.5, -1h30m): a value, never a flag, since no flag starts with a digit.
func negative(tok string) bool {
	return len(tok) > 1 && tok[0] == '-' && (tok[1] >= '0' && tok[1] <= '9' || tok[1] == '.')
}

func find(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func defined(flags []cli.Flag, tok string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(tok, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// takesValue is 1 if the flag token needs the next token as its value.
func takesValue(flags []cli.Flag, tok string) int {
	name := strings.TrimLeft(tok, "-")
	if strings.Contains(name, "=") {
		return 0
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				if _, isBool := f.(*cli.BoolFlag); isBool {
					return 0
				}
				return 1
			}
		}
	}
	return 0
}

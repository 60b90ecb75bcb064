package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"cfgcluster/schema"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
	"k8s.io/client-go/util/jsonpath"
)

// The output formats of -o. jsonpath=TEMPLATE takes kubectl's JSONPath
// templates ({.value}, {range .values[*]}{.key}{"\n"}{end}).
const formats = "table, wide, json, yaml or jsonpath=TEMPLATE"

// checkOutput validates -o before any request is made.
func checkOutput(o string) error {
	switch o {
	case "table", "wide", "json", "yaml":
		return nil
	}
	if tmpl, ok := strings.CutPrefix(o, "jsonpath="); ok {
		if err := jsonpath.New("o").Parse(tmpl); err != nil {
			return usageError("-o jsonpath: %v", err)
		}
		return nil
	}
	return usageError("-o must be %s, not %q", formats, o)
}

// structured reports whether -o asks for data (json, yaml, jsonpath) rather
// than a table for people.
func structured(c *cli.Context) bool {
	o := c.String("output")
	return o != "table" && o != "wide"
}

func stdout(c *cli.Context) io.Writer {
	if c.App.Writer != nil {
		return c.App.Writer
	}
	return os.Stdout
}

// table collects what a command shows for people: notes (lines before the
// table), a header and rows. Cells stay on one line: tabs and newlines are
// replaced, and long cells are cut (not with -o wide).
type table struct {
	wide  bool
	notes []string
	head  []string
	rows  [][]string
	empty string // said when there are no rows
}

func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}
func (t *table) header(cells ...string) { t.head = cells }

func (t *table) row(cells ...any) {
	r := make([]string, len(cells))
	for i, c := range cells {
		s := strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, fmt.Sprint(c))
		if !t.wide {
			s = cut(s, 60)
		}
		r[i] = s
	}
	t.rows = append(t.rows, r)
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// show prints v as -o asks: JSON, YAML or a JSONPath template of it, or the
// table that fill makes.
func show(c *cli.Context, v any, fill func(t *table)) error {
	out := stdout(c)
	o := c.String("output")
	switch {
	case o == "json":
		return writeJSON(out, v)
	case o == "yaml":
		generic, err := generic(v)
		if err != nil {
			return err
		}
		y, err := yaml.Marshal(generic)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	case strings.HasPrefix(o, "jsonpath="):
		generic, err := generic(v)
		if err != nil {
			return err
		}
		jp := jsonpath.New("o")
		if err := jp.Parse(strings.TrimPrefix(o, "jsonpath=")); err != nil {
			return usageError("-o jsonpath: %v", err)
		}
		var b bytes.Buffer
		if err := jp.Execute(&b, generic); err != nil {
			return usageError("-o jsonpath: %v", err)
		}
		if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
			b.WriteByte('\n')
		}
		_, err = out.Write(b.Bytes())
		return err
	}
	t := &table{wide: o == "wide"}
	fill(t)
	return t.print(c, out)
}

func (t *table) print(c *cli.Context, out io.Writer) error {
	for _, n := range t.notes {
		fmt.Fprintln(out, n)
	}
	if len(t.rows) == 0 {
		if t.empty != "" {
			fmt.Fprintln(os.Stderr, t.empty)
		}
		return nil
	}
	rows := t.rows
	if len(t.head) > 0 && !c.Bool("no-headers") {
		rows = append([][]string{t.head}, rows...)
	}
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	bold := colour(out) && len(t.head) > 0 && !c.Bool("no-headers")
	var b strings.Builder
	for n, r := range rows {
		var line strings.Builder
		for i, cell := range r {
			line.WriteString(cell)
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
			}
		}
		if n == 0 && bold {
			b.WriteString("\x1b[1m" + line.String() + "\x1b[0m\n")
		} else {
			b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// writeJSON writes v indented, without HTML escaping (<redacted>, not
// \u003credacted\u003e).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// generic is v as plain maps, slices and scalars, by its JSON form.
func generic(v any) (any, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var g any
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	if err := d.Decode(&g); err != nil {
		return nil, err
	}
	return schema.Numbers(g), nil
}

// colour reports whether w is a terminal that takes colour: not with
// NO_COLOR set (https://no-color.org) or TERM=dumb.
func colour(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return isTerminal(w)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// text renders a JSON value for a table cell.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n")
}

package schema

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"cfgcluster/cfgerr"
)

const issueSchema = `
keys:
  session.idle_timeout:   {type: duration, default: 15m, min: 1m, max: 24h, description: Idle time before a session ends}
  session.absolute_timeout: {type: duration, default: 8h}
  taskqueue.max_workers:  {type: int, default: 8, min: 1, max: 256}
  log.level:              {type: enum, values: [debug, info, warn, error], default: info}
  db.password:            {type: string, sensitive: true, requires_restart: true}
rules:
  - name: idle-within-absolute
    expr: session.idle_timeout <= session.absolute_timeout
    message: the idle timeout must not exceed the absolute timeout
`

func mustParse(t *testing.T, doc string) *Schema {
	t.Helper()
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestParseIssueExample(t *testing.T) {
	s := mustParse(t, issueSchema)
	k, err := s.Key("session.idle_timeout")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := k.DefaultValue(); !ok || d != 15*time.Minute {
		t.Fatalf("default = %v, %v; want 15m", d, ok)
	}
	if k.Description != "Idle time before a session ends" {
		t.Fatalf("description = %q", k.Description)
	}
	pw, _ := s.Key("db.password")
	if !pw.Sensitive || !pw.RequiresRestart {
		t.Fatalf("flags lost: %+v", pw)
	}
	if _, ok := pw.DefaultValue(); ok {
		t.Fatal("db.password has no default")
	}
	rules := s.RulesFor("session.absolute_timeout")
	if len(rules) != 1 || rules[0].Name != "idle-within-absolute" {
		t.Fatalf("RulesFor = %v", rules)
	}
	if got := strings.Join(rules[0].Keys, ","); got != "session.absolute_timeout,session.idle_timeout" {
		t.Fatalf("rule keys = %s", got)
	}
	if len(s.RulesFor("log.level")) != 0 {
		t.Fatal("log.level is read by no rule")
	}
}

func TestParseExampleFileAndJSON(t *testing.T) {
	doc, err := os.ReadFile("../examples/schema.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, string(doc))
	if len(s.Keys) < 10 || len(s.Rules) != 2 {
		t.Fatalf("keys %d rules %d", len(s.Keys), len(s.Rules))
	}
	js := `{"keys": {"a.b": {"type": "int", "default": 3}}}`
	if k, _ := mustParse(t, js).Key("a.b"); k.def != int64(3) {
		t.Fatalf("JSON schema default = %#v", k.def)
	}
}

// Every problem in a schema is named at once, each with its key or rule.
func TestValidateNamesEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`
keys:
  a.kind:  {type: integer}
  a.level: {type: int, default: 500, min: 1, max: 256}
  a.mode:  {type: enum}
  a.name:  {type: string, pattern: "("}
  Bad.Name: {type: int}
`))
	if err == nil {
		t.Fatal("invalid schema accepted")
	}
	all := cfgerr.All(err)
	want := map[string]string{
		"a.kind":   "unknown type \"integer\"",
		"a.level":  "above the maximum 256",
		"a.mode":   "at least one value",
		"a.name":   "does not compile",
		"Bad.Name": "not allowed",
	}
	if len(all) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(all), len(want), err)
	}
	for _, e := range all {
		if e.Code != cfgerr.Invalid || !strings.Contains(e.Message, want[e.Key]) {
			t.Errorf("problem for %q: %v (want %q)", e.Key, e, want[e.Key])
		}
	}
}

func TestValidateRules(t *testing.T) {
	for name, tc := range map[string]struct{ rules, want string }{
		"unknown key":    {`[{name: r, expr: "a.x > 1"}]`, "undeclared reference"},
		"no compile":     {`[{name: r, expr: "a.n >"}]`, "does not compile"},
		"not bool":       {`[{name: r, expr: "a.n + 1"}]`, "must be a bool"},
		"type mismatch":  {`[{name: r, expr: "a.n < a.d"}]`, "does not compile"},
		"no name":        {`[{expr: "a.n > 1"}]`, "needs a name"},
		"duplicate name": {`[{name: r, expr: "a.n > 1"}, {name: r, expr: "a.n > 2"}]`, "defined twice"},
		"reads nothing":  {`[{name: r, expr: "1 < 2"}]`, "reads no key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("keys: {a.n: {type: int}, a.d: {type: duration}}\nrules: " + tc.rules))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseRefusesMalformedAndUnknownFields(t *testing.T) {
	for _, doc := range []string{"keys: [unclosed", "keys: {a: {type: int, typo: 1}}", "{\"keys\": 3}"} {
		if _, err := Parse([]byte(doc)); cfgerr.CodeOf(err) != cfgerr.Invalid {
			t.Errorf("Parse(%q) = %v, want invalid", doc, err)
		}
	}
	s := mustParse(t, "")
	if len(s.Keys) != 0 {
		t.Fatal("empty document has keys")
	}
}

func TestCoerceAndParseText(t *testing.T) {
	s := mustParse(t, `
keys:
  b: {type: bool}
  i: {type: int, min: 1, max: 10}
  f: {type: float, min: 0, max: 1}
  s: {type: string, pattern: "^[a-z]+$", max_length: 5}
  d: {type: duration, min: 1s}
  e: {type: enum, values: [x, y]}
  l: {type: list, max_length: 2}
  j: {type: json}
`)
	ok := []struct {
		key, text string
		want      any
	}{
		{"b", "true", true}, {"i", "7", int64(7)}, {"f", "0.5", 0.5}, {"s", "abc", "abc"},
		{"d", "1m30s", 90 * time.Second}, {"e", "y", "y"}, {"l", "a, b", []string{"a", "b"}},
		{"l", `["a"]`, []string{"a"}}, {"l", "", []string{}},
		{"j", `{"n": 1}`, map[string]any{"n": json.Number("1")}},
	}
	for _, tc := range ok {
		k, _ := s.Key(tc.key)
		got, err := k.ParseText(tc.text)
		if err != nil || !Equal(got, tc.want) {
			t.Errorf("%s ParseText(%q) = %#v, %v; want %#v", tc.key, tc.text, got, err, tc.want)
		}
	}
	bad := []struct{ key, text, want string }{
		{"b", "yes!", "not a bool"}, {"i", "11", "above the maximum 10"}, {"i", "0", "below the minimum 1"},
		{"i", "1.5", "not a whole number"}, {"f", "NaN", "not a finite"}, {"s", "ABC", "does not match"},
		{"s", "abcdef", "longer than max_length"}, {"d", "10", "not a duration"}, {"d", "10ms", "below the minimum"},
		{"e", "z", "not one of [x, y]"}, {"l", "a,b,c", "more than max_length"}, {"j", "[1]", "a json is required, got a list"},
		{"j", `{"a":1} x`, "trailing data"},
	}
	for _, tc := range bad {
		k, _ := s.Key(tc.key)
		_, err := k.ParseText(tc.text)
		e := cfgerr.First(err)
		if e == nil || e.Key != tc.key || e.Code != cfgerr.Invalid || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s ParseText(%q) = %v; want invalid naming the key and %q", tc.key, tc.text, err, tc.want)
		}
	}
	// Coerce takes decoded JSON and refuses wrong types without guessing.
	i, _ := s.Key("i")
	if _, err := i.Coerce("7"); err == nil || !strings.Contains(err.Error(), "an int is required, got a string") {
		t.Errorf("Coerce(string) for int: %v", err)
	}
	if v, err := i.Coerce(json.Number("7")); err != nil || v != int64(7) {
		t.Errorf("Coerce(json.Number) = %v, %v", v, err)
	}
	if _, err := i.Coerce(nil); err == nil {
		t.Error("Coerce(nil) accepted")
	}
}

func TestRuleEval(t *testing.T) {
	s := mustParse(t, issueSchema)
	vals := map[string]any{"session.idle_timeout": 10 * time.Hour, "session.absolute_timeout": 8 * time.Hour}
	get := func(k string) (any, bool) { v, ok := vals[k]; return v, ok }
	err := s.CheckAll(get)
	e := cfgerr.First(err)
	if e == nil || e.Field != "rule idle-within-absolute" || !strings.Contains(e.Message, "must not exceed") {
		t.Fatalf("violation = %v", err)
	}
	vals["session.idle_timeout"] = time.Hour
	if err := s.CheckAll(get); err != nil {
		t.Fatalf("rule should hold: %v", err)
	}
	delete(vals, "session.absolute_timeout")
	if err := s.CheckAll(get); err != nil {
		t.Fatalf("a rule over an unset key holds vacuously: %v", err)
	}
}

func TestRuleOverJSONAndList(t *testing.T) {
	s := mustParse(t, `
keys:
  l: {type: json}
  c: {type: list}
rules:
  - {name: cap, expr: "int(l.daily) <= 100 && size(c) > 0"}
`)
	k, _ := s.Key("l")
	v, err := k.ParseText(`{"daily": 150}`)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{"l": v, "c": []string{"x"}}
	if err := s.CheckAll(func(k string) (any, bool) { v, ok := vals[k]; return v, ok }); err == nil {
		t.Fatal("rule over json value should fail for 150")
	}
}

func TestNames(t *testing.T) {
	for _, ok := range []string{"a", "session.idle_timeout", "a-b.c_1"} {
		if err := ValidKeyName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "A", "a..b", ".a", "a.", "a b", "a/b", strings.Repeat("a", 257)} {
		if err := ValidKeyName(bad); cfgerr.CodeOf(err) != cfgerr.Invalid {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := EnvVar("CFG_", "session.idle-timeout"); got != "CFG_SESSION_IDLE_TIMEOUT" {
		t.Errorf("EnvVar = %s", got)
	}
}

func TestEnvOverridesMustNotCollide(t *testing.T) {
	_, err := Parse([]byte("keys:\n  x.b_c: {type: int}\n  x.b-c: {type: int}\n  x_b.c: {type: int}\n  x.d: {type: int}\n"))
	all := cfgerr.All(err)
	if len(all) != 1 || !strings.Contains(err.Error(), "x.b-c, x.b_c, x_b.c") || !strings.Contains(err.Error(), "X_B_C") {
		t.Fatalf("colliding env overrides: %v", err)
	}
}

func TestYAMLDocumentsAreBounded(t *testing.T) {
	for name, doc := range map[string]string{
		"duplicate key": "keys:\n  a: {type: int}\n  a: {type: string}\n",
		"alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
		"oversize": "keys: {}\n#" + strings.Repeat("x", MaxDocumentBytes),
	} {
		if _, err := Parse([]byte(doc)); cfgerr.CodeOf(err) != cfgerr.Invalid {
			t.Errorf("%s: %.200v", name, err)
		}
	}
	// YAML 1.2 scalars and anchors still work.
	s := mustParse(t, "keys:\n  a.a: &def {type: string, default: yes}\n  a.b: *def\n  a.c: {type: int, default: 0x10}\n")
	k, _ := s.Key("a.b")
	if d, _ := k.DefaultValue(); d != "yes" {
		t.Errorf("a.b default = %v", d)
	}
}

// BenchmarkParseFlat shows that parsing is linear in the number of keys
// (yaml.v3's map decoding was quadratic: 80,000 keys took 40 s):
// go test ./schema -run X -bench ParseFlat -benchtime 1x
func BenchmarkParseFlat(b *testing.B) {
	for _, n := range []int{10_000, 80_000} {
		var doc strings.Builder
		doc.WriteString("keys:\n")
		for i := range n {
			fmt.Fprintf(&doc, "  k.k%06d: {type: int, default: 1}\n", i)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse([]byte(doc.String())); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

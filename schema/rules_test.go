package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Every CEL macro must be enforced: the keys a rule reads are declared
// keys only, never a comprehension's variable (which, taken for an unset
// key, made the rule hold vacuously).
func TestRuleMacrosAreEnforced(t *testing.T) {
	const doc = `
keys:
  alerts.channels: {type: list}
  alerts.routes:   {type: json}
rules:
  - {name: all,       expr: 'alerts.channels.all(c, c != "pager")'}
  - {name: exists,    expr: 'alerts.channels.exists(c, c == "email")'}
  - {name: one,       expr: 'alerts.channels.exists_one(c, c == "email")'}
  - {name: map,       expr: 'alerts.channels.map(c, size(c)).all(n, n <= 8)'}
  - {name: filter,    expr: 'size(alerts.channels.filter(c, c.startsWith("x"))) == 0'}
  - {name: maps,      expr: 'alerts.routes.all(k, k != "forbidden")'}
`
	s := mustParse(t, doc)
	for _, r := range s.Rules {
		want := "alerts.channels"
		if r.Name == "maps" {
			want = "alerts.routes"
		}
		if got := strings.Join(r.Keys, ","); got != want {
			t.Errorf("rule %s reads %q, want %q", r.Name, got, want)
		}
	}
	cases := []struct {
		channels []any
		failing  string // the rules that must fail, comma-separated
	}{
		{[]any{"email", "slack"}, ""},
		{[]any{"email", "pager"}, "all"},
		{[]any{"slack"}, "exists,one"},
		{[]any{"email", "email"}, "one"},
		{[]any{"email", "much-too-long"}, "map"},
		{[]any{"email", "xmpp"}, "filter"},
	}
	routes := map[string]any{"ok": true}
	for _, c := range cases {
		vals := map[string]any{"alerts.channels": c.channels, "alerts.routes": routes}
		for _, r := range s.Rules {
			err := r.Eval(func(k string) (any, bool) { v, ok := vals[k]; return v, ok })
			fails := strings.Contains(","+c.failing+",", ","+r.Name+",")
			if fails && err == nil {
				t.Errorf("%v: rule %s holds, want it to fail", c.channels, r.Name)
			}
			if !fails && err != nil {
				t.Errorf("%v: rule %s: %v", c.channels, r.Name, err)
			}
		}
	}
	bad := map[string]any{"alerts.channels": []any{"email"}, "alerts.routes": map[string]any{"forbidden": 1}}
	if err := s.Check(s.RulesFor("alerts.routes"), func(k string) (any, bool) { v, ok := bad[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "rule maps") {
		t.Errorf("map comprehension not enforced: %v", err)
	}
}

func TestRuleCostIsBounded(t *testing.T) {
	// A cubic comprehension over an unbounded list is refused whole, naming the rule.
	_, err := Parse([]byte(`
keys:
  l: {type: list}
rules:
  - {name: cubic, expr: 'l.all(a, l.all(b, l.all(c, a + b + c != "")))'}
`))
	if err == nil || !strings.Contains(err.Error(), `rule "cubic"`) || !strings.Contains(err.Error(), "too expensive") {
		t.Fatalf("cubic rule: %v", err)
	}
	// Bounded by max_length, the same rule is cheap enough.
	mustParse(t, `
keys:
  l: {type: list, max_length: 10}
rules:
  - {name: cubic, expr: 'l.all(a, l.all(b, l.all(c, a + b + c != "")))'}
`)
	// A quadratic rule over a json object passes the estimate (100
	// assumed entries), but an evaluation over far more entries is stopped
	// by the cost limit, in bounded time.
	s := mustParse(t, `
keys:
  m: {type: json}
rules:
  - {name: pairs, expr: 'm.all(a, m.all(b, a == b || a != b))'}
`)
	items := map[string]any{}
	for i := range 20_000 {
		items[fmt.Sprint(i)] = true
	}
	start := time.Now()
	err = s.Rules[0].Eval(func(string) (any, bool) { return items, true }, "m")
	if err == nil || !strings.Contains(err.Error(), "rule pairs") {
		t.Fatalf("20,000² evaluation: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the evaluation was not stopped: %v", d)
	}
}

func TestJSONValuesReadBack(t *testing.T) {
	s := mustParse(t, `keys: {j: {type: json}}`)
	k, _ := s.Key("j")
	deep := strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1)
	for name, doc := range map[string]string{
		"huge number": `{"x": 1e400}`,
		"nested huge": `{"x": [1, {"y": -1e999}]}`,
		"too deep":    deep,
	} {
		var v any
		d := json.NewDecoder(strings.NewReader(doc))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Coerce(v); err == nil || !strings.Contains(err.Error(), `key "j"`) {
			t.Errorf("%s: accepted or unnamed: %v", name, err)
		}
	}
	ok := strings.Repeat(`{"a":`, MaxJSONDepth-1) + "1.5e300" + strings.Repeat("}", MaxJSONDepth-1)
	if _, err := k.ParseText(ok); err != nil {
		t.Errorf("depth %d: %v", MaxJSONDepth-1, err)
	}
}

// A refused sensitive value never appears in the error.
func TestSensitiveValuesNeverInErrors(t *testing.T) {
	s := mustParse(t, `
keys:
  p.s:   {type: string, sensitive: true, pattern: '^$', max_length: 3}
  p.e:   {type: enum, values: [a], sensitive: true}
  p.i:   {type: int, max: 1, sensitive: true}
  p.d:   {type: duration, sensitive: true}
  p.l:   {type: list, pattern: '^$', sensitive: true}
`)
	const secret = "hunter2"
	for key, input := range map[string]any{"p.s": secret, "p.e": secret, "p.d": secret, "p.l": []any{secret}} {
		k, _ := s.Key(key)
		if _, err := k.Coerce(input); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: %v", key, err)
		}
		if _, err := k.ParseText(secret); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%s (text): %v", key, err)
		}
	}
	k, _ := s.Key("p.i")
	if _, err := k.ParseText("424242"); err == nil || strings.Contains(err.Error(), "424242") {
		t.Errorf("p.i: %v", err)
	}
	if _, err := k.ParseText("9e99x"); err == nil || strings.Contains(err.Error(), "9e99x") {
		t.Errorf("p.i (text): %v", err)
	}
}

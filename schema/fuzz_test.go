package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"cfgcluster/cfgerr"
)

// FuzzParse: any document either parses into a usable schema or is refused
// with coded Invalid errors; it never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(issueSchema))
	f.Add([]byte(`{"keys":{"a":{"type":"int","min":1,"max":0}}}`))
	f.Add([]byte("keys: {a: {type: list, pattern: '['}}\nrules: [{name: r, expr: 'size(a) > 1'}]"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := Parse(doc)
		if err != nil {
			for _, e := range cfgerr.All(err) {
				if e.Code != cfgerr.Invalid {
					t.Fatalf("uncoded error %v", err)
				}
			}
			return
		}
		for _, name := range s.KeyNames() {
			k, _ := s.Key(name)
			if d, ok := k.DefaultValue(); ok {
				if err := k.Check(d); err != nil {
					t.Fatalf("accepted default fails its own key: %v", err)
				}
			}
		}
		_ = s.CheckAll(func(k string) (any, bool) { return s.Keys[k].DefaultValue() })
	})
}

// FuzzParseText: text either parses into a value that passes Check and
// round-trips through Format, or is refused naming the key.
func FuzzParseText(f *testing.F) {
	s, err := Parse([]byte(`
keys:
  b: {type: bool}
  i: {type: int, min: -5, max: 1000}
  f: {type: float}
  d: {type: duration}
  l: {type: list}
  j: {type: json}
  s: {type: string, pattern: "^[a-z]*$"}
`))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"true", "12", "-1.5e3", "1h2m", "a,b", `["x"]`, `{"a":[1,{"b":null}]}`, "abc"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, name := range s.KeyNames() {
			k, _ := s.Key(name)
			v, err := k.ParseText(text)
			if err != nil {
				if e := cfgerr.First(err); e == nil || e.Key != name {
					t.Fatalf("%s: error does not name the key: %v", name, err)
				}
				continue
			}
			if err := k.Check(v); err != nil {
				t.Fatalf("%s: parsed value fails Check: %v", name, err)
			}
			if k.Type == JSON || k.Type == List {
				continue // Format gives JSON for these; ParseText reads it back below
			}
			back, err := k.ParseText(Format(k.Type, v))
			if err != nil || !Equal(back, v) {
				t.Fatalf("%s: %#v does not round-trip: %#v, %v", name, v, back, err)
			}
		}
	})
}

// FuzzRule: any expression either compiles into a bounded rule or is
// refused naming the rule; a compiled rule evaluates over any values of
// its keys without panicking, within its cost limit.
func FuzzRule(f *testing.F) {
	for _, e := range []string{
		`a.n < 5`, `a.l.all(x, x != "p")`, `a.l.exists_one(x, x == "q")`, `a.m.all(k, a.m[k] != 0)`,
		`a.l.map(x, size(x)).all(n, n < 9)`, `size(a.l.filter(x, x.startsWith("z"))) == 0`,
		`a.l.all(x, a.l.all(y, a.l.all(z, x + y + z != "")))`, `a.d < duration("1h")`, `a.n`,
	} {
		f.Add(e, int64(3), "p,q", `{"k": 1}`)
	}
	f.Fuzz(func(t *testing.T, expr string, n int64, list, obj string) {
		s, err := Parse([]byte(fmt.Sprintf("keys:\n  a.n: {type: int}\n  a.l: {type: list}\n  a.m: {type: json}\n  a.d: {type: duration}\nrules:\n  - {name: r, expr: %q}\n", expr)))
		if err != nil {
			for _, e := range cfgerr.All(err) {
				if e.Code != cfgerr.Invalid {
					t.Fatalf("uncoded error %v", err)
				}
			}
			return
		}
		var m any
		if json.Unmarshal([]byte(obj), &m) != nil {
			m = map[string]any{}
		}
		if _, ok := m.(map[string]any); !ok {
			m = map[string]any{}
		}
		vals := map[string]any{"a.n": n, "a.l": strings.Split(list, ","), "a.m": m, "a.d": time.Duration(n)}
		err = s.Rules[0].Eval(func(k string) (any, bool) { v, ok := vals[k]; return v, ok })
		if err != nil && cfgerr.CodeOf(err) != cfgerr.Invalid {
			t.Fatalf("uncoded evaluation error %v", err)
		}
	})
}

// FuzzJSONValue: any JSON document is either refused for a json key with a
// coded error naming it, or accepted as a value that encodes and decodes
// back to itself (what the audit trail must be able to read).
func FuzzJSONValue(f *testing.F) {
	for _, d := range []string{`{"a": 1}`, `{"x": 1e400}`, `{"a": [1, {"b": null}]}`, `{"n": -0.0}`, `{"s": "\u00e9"}`} {
		f.Add(d)
	}
	s, err := Parse([]byte("keys: {j: {type: json}}"))
	if err != nil {
		f.Fatal(err)
	}
	k, _ := s.Key("j")
	f.Fuzz(func(t *testing.T, doc string) {
		d := json.NewDecoder(strings.NewReader(doc))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil {
			return
		}
		got, err := k.Coerce(v)
		if err != nil {
			if e := cfgerr.First(err); e == nil || e.Code != cfgerr.Invalid || e.Key != "j" {
				t.Fatalf("refusal does not name the key: %v", err)
			}
			return
		}
		b, err := json.Marshal(Encode(got))
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		var back any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("accepted value does not read back: %v (%s)", err, b)
		}
	})
}

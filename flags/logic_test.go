package flags

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// apply compiles rule (JSON) and runs it on data (JSON), as a flag's
// targeting runs on its context.
func apply(t *testing.T, rule, data string) any {
	t.Helper()
	var r, d any
	if err := json.Unmarshal([]byte(rule), &r); err != nil {
		t.Fatalf("rule %s: %v", rule, err)
	}
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		t.Fatalf("data %s: %v", data, err)
	}
	c := &compiler{flag: &Flag{Key: "my-flag"}, evaluators: map[string]any{}}
	n, err := c.compile(r)
	if err != nil {
		t.Fatalf("rule %s: %v", rule, err)
	}
	return n(env{data: d, root: true, flag: c.flag})
}

// JsonLogic's operators, from jsonlogic.com's operations page and its
// test suite's cases.
func TestJsonLogic(t *testing.T) {
	defer func(clock func() int64) { now = clock }(now)
	now = func() int64 { return 1700000000 }
	for _, c := range []struct{ rule, data, want string }{
		// var: paths, indexes, defaults, the whole data, $flagd
		{`{"var": "a"}`, `{"a": 1}`, `1`},
		{`{"var": ["a"]}`, `{"a": 1}`, `1`},
		{`{"var": "a.b.c"}`, `{"a": {"b": {"c": "deep"}}}`, `"deep"`},
		{`{"var": 1}`, `["zero", "one"]`, `"one"`},
		{`{"var": "x.1"}`, `{"x": ["zero", "one"]}`, `"one"`},
		{`{"var": ["z", 26]}`, `{"a": 1}`, `26`},
		{`{"var": "z"}`, `{"a": 1}`, `null`},
		{`{"var": ""}`, `{"a": 1}`, `{"a": 1}`},
		{`{"var": {"cat": ["a", ".b"]}}`, `{"a": {"b": 7}}`, `7`},
		{`{"var": "$flagd.flagKey"}`, `{}`, `"my-flag"`},
		{`{"var": "$flagd.timestamp"}`, `{}`, `1700000000`},
		// missing, missing_some
		{`{"missing": ["a", "b"]}`, `{"a": "apple", "c": "carrot"}`, `["b"]`},
		{`{"missing": ["a", "b"]}`, `{"a": "apple", "b": ""}`, `["b"]`},
		{`{"missing": {"merge": ["vin", {"if": [{"var": "financing"}, ["apr"], []]}]}}`, `{"financing": true}`, `["vin", "apr"]`},
		{`{"missing_some": [1, ["a", "b", "c"]]}`, `{"a": "apple"}`, `[]`},
		{`{"missing_some": [2, ["a", "b", "c"]]}`, `{"a": "apple"}`, `["b", "c"]`},
		// if, with else-if chains and without an else
		{`{"if": [true, "yes", "no"]}`, `{}`, `"yes"`},
		{`{"if": [[], "yes", "no"]}`, `{}`, `"no"`},
		{`{"if": [{"<": [{"var": "t"}, 0]}, "freezing", {"<": [{"var": "t"}, 100]}, "liquid", "gas"]}`, `{"t": 55}`, `"liquid"`},
		{`{"if": [false, "yes"]}`, `{}`, `null`},
		{`{"if": []}`, `{}`, `null`},
		{`{"?:": [true, 1, 2]}`, `{}`, `1`},
		// truthiness: "0" and {} are true; 0, "", [] and null false
		{`{"!!": ["0"]}`, `{}`, `true`},
		{`{"!!": [[]]}`, `{}`, `false`},
		{`{"!!": [0]}`, `{}`, `false`},
		{`{"!": [null]}`, `{}`, `true`},
		{`{"!": true}`, `{}`, `false`},
		// loose and strict equality
		{`{"==": [1, "1"]}`, `{}`, `true`},
		{`{"==": [0, false]}`, `{}`, `true`},
		{`{"==": [null, 0]}`, `{}`, `false`},
		{`{"==": [null, null]}`, `{}`, `true`},
		{`{"==": ["a", "a"]}`, `{}`, `true`},
		{`{"===": [1, "1"]}`, `{}`, `false`},
		{`{"===": [1, 1]}`, `{}`, `true`},
		{`{"!=": [1, 2]}`, `{}`, `true`},
		{`{"!==": [1, 1.0]}`, `{}`, `false`},
		// and, or: short-circuit, answering the deciding value
		{`{"and": [true, "a", 3]}`, `{}`, `3`},
		{`{"and": [true, "", 3]}`, `{}`, `""`},
		{`{"or": [false, 0, "a"]}`, `{}`, `"a"`},
		{`{"or": [false, 0]}`, `{}`, `0`},
		{`{"and": [false, {"var": "never.read"}]}`, `{}`, `false`},
		// ordering, between
		{`{">": [2, 1]}`, `{}`, `true`},
		{`{">=": [1, 1]}`, `{}`, `true`},
		{`{"<": ["a", "b"]}`, `{}`, `true`},
		{`{"<": ["11", "2"]}`, `{}`, `true`},
		{`{"<": [11, "2"]}`, `{}`, `false`},
		{`{"<": [1, 2, 3]}`, `{}`, `true`},
		{`{"<": [1, 1, 3]}`, `{}`, `false`},
		{`{"<=": [1, 1, 3]}`, `{}`, `true`},
		{`{"<": [1, "x"]}`, `{}`, `false`},
		// arithmetic
		{`{"+": [4, 2]}`, `{}`, `6`},
		{`{"+": [2, 2, 2, 2]}`, `{}`, `8`},
		{`{"+": ["3.14"]}`, `{}`, `3.14`},
		{`{"-": [4, 2]}`, `{}`, `2`},
		{`{"-": [2]}`, `{}`, `-2`},
		{`{"*": [4, 2, 3]}`, `{}`, `24`},
		{`{"/": [4, 2]}`, `{}`, `2`},
		{`{"%": [101, 2]}`, `{}`, `1`},
		{`{"max": [1, 2, 3]}`, `{}`, `3`},
		{`{"min": [1, 2, 3]}`, `{}`, `1`},
		// strings
		{`{"in": ["Spring", "Springfield"]}`, `{}`, `true`},
		{`{"in": ["Ring", ["Ring", "Spring"]]}`, `{}`, `true`},
		{`{"in": ["1", [1]]}`, `{}`, `false`},
		{`{"cat": ["I love", " pie"]}`, `{}`, `"I love pie"`},
		{`{"cat": ["v", 1.5, true, null]}`, `{}`, `"v1.5true"`},
		{`{"substr": ["jsonlogic", 4]}`, `{}`, `"logic"`},
		{`{"substr": ["jsonlogic", -5]}`, `{}`, `"logic"`},
		{`{"substr": ["jsonlogic", 1, 3]}`, `{}`, `"son"`},
		{`{"substr": ["jsonlogic", 4, -2]}`, `{}`, `"log"`},
		{`{"substr": ["jsonlogic", 4, 1e300]}`, `{}`, `"logic"`},
		{`{"substr": ["jsonlogic", -1e300, -1e300]}`, `{}`, `""`},
		// arrays
		{`{"merge": [[1, 2], [3, 4]]}`, `{}`, `[1, 2, 3, 4]`},
		{`{"merge": [1, 2, [3, 4]]}`, `{}`, `[1, 2, 3, 4]`},
		{`{"map": [{"var": "n"}, {"*": [{"var": ""}, 2]}]}`, `{"n": [1, 2, 3]}`, `[2, 4, 6]`},
		{`{"filter": [{"var": "n"}, {"%": [{"var": ""}, 2]}]}`, `{"n": [1, 2, 3, 4, 5]}`, `[1, 3, 5]`},
		{`{"reduce": [{"var": "n"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}`, `{"n": [1, 2, 3, 4]}`, `10`},
		{`{"all": [[1, 2, 3], {">": [{"var": ""}, 0]}]}`, `{}`, `true`},
		{`{"all": [[], {">": [{"var": ""}, 0]}]}`, `{}`, `false`},
		{`{"some": [[-1, 0, 1], {">": [{"var": ""}, 0]}]}`, `{}`, `true`},
		{`{"none": [[-3, -2], {">": [{"var": ""}, 0]}]}`, `{}`, `true`},
		{`{"some": [{"var": "pies"}, {"==": [{"var": "filling"}, "apple"]}]}`, `{"pies": [{"filling": "pumpkin"}, {"filling": "apple"}]}`, `true`},
		// data, not rules: arrays of literals, objects of more than one key
		{`[1, {"var": "a"}]`, `{"a": "x"}`, `[1, "x"]`},
		{`{"a": 1, "b": 2}`, `{}`, `{"a": 1, "b": 2}`},
		// flagd's string operators answer null, not false, for what they cannot use
		{`{"starts_with": [{"var": "id"}, "abc"]}`, `{"id": "abcdef"}`, `true`},
		{`{"ends_with": [{"var": "id"}, "xyz"]}`, `{"id": "abcdef"}`, `false`},
		{`{"starts_with": [{"var": "id"}, "abc"]}`, `{"id": 5}`, `null`},
		// sem_ver
		{`{"sem_ver": ["1.2.3", ">=", "1.2.0"]}`, `{}`, `true`},
		{`{"sem_ver": ["1.0.0-alpha", "<", "1.0.0-alpha.1"]}`, `{}`, `true`},
		{`{"sem_ver": ["1.0.0-alpha.beta", "<", "1.0.0-beta"]}`, `{}`, `true`},
		{`{"sem_ver": ["1.0.0-beta.11", ">", "1.0.0-beta.2"]}`, `{}`, `true`},
		{`{"sem_ver": ["1.0.0-rc.1", "<", "1.0.0"]}`, `{}`, `true`},
		{`{"sem_ver": ["01.0.0", "=", "1.0.0"]}`, `{}`, `null`},
		{`{"sem_ver": ["1.0-rc", "=", "1.0.0-rc"]}`, `{}`, `null`},
		{`{"sem_ver": ["2.5.0", "~", "2.5.9"]}`, `{}`, `true`},
		{`{"sem_ver": ["2.6.0", "~", "2.5.9"]}`, `{}`, `false`},
		// fractional: the bucket of flag key + targeting key
		{`{"fractional": [["a", 0], ["b", 1]]}`, `{"targetingKey": "u1"}`, `"b"`},
		{`{"fractional": [["a", 1], ["b", 1]]}`, `{}`, `null`},
		{`{"fractional": ["fixed", ["a", 50], ["b", 50]]}`, `{}`, `"a"`},
	} {
		got := apply(t, c.rule, c.data)
		var want any
		if err := json.Unmarshal([]byte(c.want), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s on %s = %#v, want %s", c.rule, c.data, got, c.want)
		}
	}
}

// A context given in Go's types reads as JSON's.
func TestGoContextValues(t *testing.T) {
	f, err := NewFlag("f", []byte(`{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		"targeting": {"if": [{"and": [{">": [{"var": "n"}, 5]}, {"in": ["b", {"var": "tags"}]}, {"==": [{"var": "u"}, 7]}]}, "on"]}}`), nil)
	if err != nil || len(f.Problems()) > 0 {
		t.Fatal(err, f.Problems())
	}
	d := f.Evaluate(map[string]any{"n": 6, "tags": []string{"a", "b"}, "u": uint8(7)})
	if d.Variant != "off" || d.Reason != Default {
		// uint8 is not read: u is absent, so the rule does not match
		t.Fatalf("%+v", d)
	}
	d = f.Evaluate(map[string]any{"n": int64(6), "tags": []string{"a", "b"}, "u": json.Number("7")})
	if d.Variant != "on" || d.Reason != TargetingMatch {
		t.Fatalf("%+v", d)
	}
}

// Definitions a write refuses, each with the path of its problem; and
// the testkit's flags: all valid but the seven that exist to test how an
// evaluator copes with broken rules.
func TestProblems(t *testing.T) {
	for _, c := range []struct{ def, path, reason string }{
		{`{"state": "ON", "variants": {"a": 1}}`, "state", `"ON" is not ENABLED or DISABLED`},
		{`{"variants": {"a": 1}}`, "state", "missing"},
		{`{"state": "ENABLED", "variants": {}}`, "variants", "at least one variant"},
		{`{"state": "ENABLED", "variants": {"a": 1, "b": "x"}}`, "variants.", "all of a flag's variants have one type"},
		{`{"state": "ENABLED", "variants": {"a": [1]}}`, "variants.a", "not an array"},
		{`{"state": "ENABLED", "variants": {"a": null}}`, "variants.a", "not null"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}`, "defaultVariant", `"b" is not one of the variants [a]`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "metadata": {"m": [1]}}`, "metadata.m", "not an array"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"nope": [1]}}`, "targeting.nope", `unknown operator "nope"`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [true, {"$ref": "x"}]}}`, "targeting.if[1].$ref", `no such evaluator`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "loop"}}`, "targeting.$ref.$ref", `refers to itself (loop → again → loop)`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [true, "b", "a"]}}`, "targeting.if[1]", `answers "b", which is not one of the variants`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"fractional": [["a", 50.5], ["b", 50]]}}`, "targeting.fractional[0]", "not a whole number"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"fractional": [["a", 2147483647], ["a", 1]]}}`, "targeting.fractional", "more than 2147483647"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"fractional": []}}`, "targeting.fractional", "at least one"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"sem_ver": [{"var": "v"}, "=", "one"]}}`, "targeting.sem_ver", `one is not a semantic version`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"map": [1]}}`, "targeting.map", "takes an array and a rule"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": ` + strings.Repeat(`{"!": `, 70) + `true` + strings.Repeat(`}`, 70) + `}`, "targeting", "nested more than 64 deep"},
		{`{"state": "ENABLED", "variants": {"a": 1}, "stat": 1}`, "", `unknown field "stat"`},
		{`{"state": "ENABLED", "variants": {"a": 1}`, "", "not valid JSON"},
	} {
		evaluators := map[string]any{"loop": map[string]any{"$ref": "again"}, "again": map[string]any{"$ref": "loop"}}
		f, err := NewFlag("f", []byte(c.def), evaluators)
		var problems []*Problem
		if err != nil {
			problems = []*Problem{err.(*Problem)}
		} else {
			problems = f.Problems()
		}
		found := false
		for _, p := range problems {
			if strings.HasPrefix(p.Path, c.path) && strings.Contains(p.Reason, c.reason) {
				found = true
			}
			if strings.Contains(p.Error(), "secret") {
				t.Errorf("a problem quotes the definition: %v", p)
			}
		}
		if !found {
			t.Errorf("%s: problems %v, want %s: ...%s...", c.def, problems, c.path, c.reason)
		}
	}

	data, err := os.ReadFile(conformanceDir(t) + "/flags/testkit-flags.json")
	if err != nil {
		t.Fatal(err)
	}
	set, err := ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, p := range set.Problems() {
		bad = append(bad, p.Flag)
	}
	want := []string{"ends-with-wrong-args-flag", "fractional-negative-weight-flag", "fractional-zero-weights-flag",
		"ref-to-nonexistent-evaluator-flag", "semver-invalid-operator-flag", "semver-wrong-args-flag", "starts-with-wrong-args-flag"}
	if !reflect.DeepEqual(bad, want) {
		t.Fatalf("flags refused: %v\nwant %v", bad, want)
	}
}

// Evaluations that go wrong answer the caller's default with a code, and
// never panic.
func TestEvaluationErrors(t *testing.T) {
	set, err := ParseFile([]byte(`{"flags": {
		"n": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
		      "targeting": {"if": [{"var": "x"}, {"var": "x"}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ctx  map[string]any
		code ErrorCode
	}{
		{map[string]any{"x": "zzz"}, General},    // no such variant
		{map[string]any{"x": []any{1}}, General}, // not a name
		{map[string]any{"x": map[string]any{"a": 1}}, General},
		{nil, ""},
	} {
		d := set.Evaluate("n", c.ctx)
		if d.ErrorCode != c.code {
			t.Errorf("%v: %+v", c.ctx, d)
		}
		if v, d2 := As(d, int64(42)); c.code != "" && (v != 42 || d2.Reason != ErrorReason) {
			t.Errorf("%v: %v %+v", c.ctx, v, d2)
		}
	}
	if v, d := As(set.Evaluate("n", nil), "s"); v != "s" || d.ErrorCode != TypeMismatch {
		t.Errorf("type mismatch: %v %+v", v, d)
	}
	if v, d := As(set.Evaluate("nope", nil), true); !v || d.ErrorCode != FlagNotFound {
		t.Errorf("not found: %v %+v", v, d)
	}
	if v, _ := As(set.Evaluate("n", nil), math.Pi); v != 1 {
		t.Errorf("number as float64: %v", v)
	}
	// A name that is no variant came from the context here: the error does
	// not quote it (a context may hold what must not reach a log).
	if s := fmt.Sprint(set.Evaluate("n", map[string]any{"x": "hunter2"})); strings.Contains(s, "hunter2") {
		t.Errorf("%s", s)
	}
}

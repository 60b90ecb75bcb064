package flags

import (
	"encoding/json"
	"testing"
)

// FuzzFlag compiles any definition and evaluates it on any context: a
// definition is refused or compiles, and an evaluation answers; neither
// panics (the targeting runs without the recover that guards callers).
func FuzzFlag(f *testing.F) {
	for _, seed := range []struct{ def, ctx string }{
		{`{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "on"]}}`, `{"email": "a@b.c"}`},
		{`{"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "u"}]}, ["a", 50], ["b", 50]]}}`, `{"u": "x"}`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"sem_ver": [{"var": "v"}, "^", "1.2"]}}`, `{"v": 1.2}`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"reduce": [{"var": "n"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}}`, `{"n": [1, "2", null]}`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"substr": [{"var": "s"}, {"var": "i"}, {"var": "j"}]}}`, `{"s": "héllo", "i": -1e308, "j": 1e308}`},
		{`{"state": "ENABLED", "variants": {"a": 1}, "targeting": {"missing_some": [{"var": "k"}, {"merge": [{"var": "m"}, "z"]}]}}`, `{"k": "x", "m": [[1]]}`},
		{`{"state": "DISABLED", "variants": {"o": {"k": [1]}}}`, `null`},
	} {
		f.Add(seed.def, seed.ctx)
	}
	f.Fuzz(func(t *testing.T, def, ctxJSON string) {
		fl, err := NewFlag("fuzz-flag", []byte(def), map[string]any{"e": map[string]any{"var": "x"}})
		if err != nil {
			return
		}
		var ctx map[string]any
		_ = json.Unmarshal([]byte(ctxJSON), &ctx)
		if fl.rule != nil {
			fl.rule(env{data: ctx, root: true, flag: fl})
		}
		d := fl.Evaluate(ctx)
		if d.Reason == "" {
			t.Fatalf("no reason: %+v", d)
		}
		if len(fl.Problems()) == 0 && d.ErrorCode == ParseError {
			t.Fatalf("a flag with no problems fails to parse: %+v", d)
		}
	})
}

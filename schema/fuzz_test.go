package schema

import (
	"testing"

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

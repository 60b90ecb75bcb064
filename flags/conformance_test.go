package flags

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The evaluator conformance suite of flagd (open-feature/flagd-testbed,
// evaluator/): its gherkin features, run against this package's evaluator
// with the flags of its testkit-flags.json. The suite is read from
// ../shared/conformance beside the project (CFGCLUSTER_CONFORMANCE names
// another place); it is other projects' work, never copied in here.
// Examples tagged @fractional-v1 describe flagd's legacy bucketing, which
// v2 replaced; every other scenario runs.

func conformanceDir(t *testing.T) string {
	dir := os.Getenv("CFGCLUSTER_CONFORMANCE")
	if dir == "" {
		dir = "../../shared/conformance"
	}
	dir = filepath.Join(dir, "flagd-testbed", "evaluator")
	if _, err := os.Stat(filepath.Join(dir, "flags", "testkit-flags.json")); err != nil {
		t.Fatalf("flagd's evaluator conformance suite is not at %s (set CFGCLUSTER_CONFORMANCE to the folder that holds flagd-testbed/): %v", dir, err)
	}
	return dir
}

// scenario is one run of a scenario: an outline's steps with one example
// row's values put in.
type scenario struct {
	name  string
	steps []step
}

type step struct {
	text  string
	table [][]string // a data table under the step
}

var (
	reFlag      = regexp.MustCompile(`^a (\w+)-flag with key "([^"]*)" and a fallback value "(.*)"$`)
	reTK        = regexp.MustCompile(`^a context containing a targeting key with value "(.*)"$`)
	reKey       = regexp.MustCompile(`^a context containing a key "([^"]*)", with type "(\w+)" and with value "(.*)"$`)
	reNested    = regexp.MustCompile(`^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$`)
	reValue     = regexp.MustCompile(`^the resolved details value should be "(.*)"$`)
	reReason    = regexp.MustCompile(`^the reason should be "(.*)"$`)
	reErrorCode = regexp.MustCompile(`^the error-code should be "(.*)"$`)
)

// parseFeature reads a gherkin feature into scenarios, skipping the
// examples whose tags (their own, their scenario's or the feature's) hold
// any of skip.
func parseFeature(t *testing.T, path string, skip ...string) []scenario {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out                        []scenario
		background, steps          []step
		name                       string
		featureTags, tags, exTags  []string
		header                     []string
		inExamples, inBG, outlined bool
	)
	skipped := func(ts ...[]string) bool {
		for _, list := range ts {
			for _, tag := range list {
				for _, s := range skip {
					if tag == s {
						return true
					}
				}
			}
		}
		return false
	}
	flush := func() {
		if name != "" && !outlined && !skipped(featureTags, tags) {
			out = append(out, scenario{name: name, steps: append(append([]step{}, background...), steps...)})
		}
	}
	var pendingTags []string
	for _, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "@"):
			pendingTags = append(pendingTags, strings.Fields(line)...)
		case strings.HasPrefix(line, "Feature:"):
			featureTags, pendingTags = pendingTags, nil
		case strings.HasPrefix(line, "Background:"):
			inBG, pendingTags = true, nil
		case strings.HasPrefix(line, "Scenario"):
			flush()
			_, n, _ := strings.Cut(line, ":")
			name, tags, pendingTags = strings.TrimSpace(n), pendingTags, nil
			steps, inExamples, inBG, header = nil, false, false, nil
			outlined = strings.HasPrefix(line, "Scenario Outline:")
		case strings.HasPrefix(line, "Examples:"):
			inExamples, exTags, pendingTags, header = true, pendingTags, nil, nil
		case strings.HasPrefix(line, "|"):
			cells := splitRow(line)
			if inExamples {
				if header == nil {
					header = cells
					continue
				}
				if skipped(featureTags, tags, exTags) {
					continue
				}
				s := scenario{name: fmt.Sprintf("%s %v", name, cells)}
				for _, st := range append(append([]step{}, background...), steps...) {
					for i, h := range header {
						st.text = strings.ReplaceAll(st.text, "<"+h+">", cells[i])
					}
					s.steps = append(s.steps, st)
				}
				out = append(out, s)
				continue
			}
			target := &steps
			if inBG {
				target = &background
			}
			last := &(*target)[len(*target)-1]
			last.table = append(last.table, cells)
		default:
			for _, kw := range []string{"Given ", "When ", "Then ", "And ", "But "} {
				if rest, ok := strings.CutPrefix(line, kw); ok {
					if inBG {
						background = append(background, step{text: rest})
					} else {
						steps = append(steps, step{text: rest})
					}
				}
			}
		}
	}
	flush()
	return out
}

func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	for _, c := range strings.Split(line, "|") {
		cells = append(cells, strings.ReplaceAll(strings.TrimSpace(c), `\"`, `"`))
	}
	return cells
}

// typed reads a fallback or expected value as the flag type's.
func typed(t *testing.T, typ, s string) any {
	t.Helper()
	var v any
	var err error
	switch typ {
	case "Boolean":
		v, err = strconv.ParseBool(s)
	case "Integer":
		v, err = strconv.ParseInt(s, 10, 64)
	case "Float":
		v, err = strconv.ParseFloat(s, 64)
	case "String":
		v = s
	case "Object":
		var m map[string]any
		err = json.Unmarshal([]byte(s), &m)
		v = m
	default:
		t.Fatalf("flag type %q", typ)
	}
	if err != nil {
		t.Fatalf("%s value %q: %v", typ, s, err)
	}
	return v
}

func resolve(typ string, set *Set, key string, ctx map[string]any, def any) (any, Detail) {
	d := set.Evaluate(key, ctx)
	switch typ {
	case "Boolean":
		return As(d, def.(bool))
	case "Integer":
		return As(d, def.(int64))
	case "Float":
		return As(d, def.(float64))
	case "String":
		return As(d, def.(string))
	}
	return As(d, def.(map[string]any))
}

func TestConformance(t *testing.T) {
	dir := conformanceDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "flags", "testkit-flags.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	features, _ := filepath.Glob(filepath.Join(dir, "gherkin", "*.feature"))
	if len(features) == 0 {
		t.Fatalf("no features in %s", dir)
	}
	ran := 0
	for _, path := range features {
		for _, sc := range parseFeature(t, path, "@fractional-v1") {
			ran++
			t.Run(strings.TrimSuffix(filepath.Base(path), ".feature")+"/"+sc.name, func(t *testing.T) {
				var typ, key string
				var def, got any
				var d Detail
				ctx := map[string]any{}
				for _, st := range sc.steps {
					if m := reFlag.FindStringSubmatch(st.text); m != nil {
						typ, key, def = m[1], m[2], typed(t, m[1], m[3])
					} else if m := reTK.FindStringSubmatch(st.text); m != nil {
						ctx["targetingKey"] = m[1]
					} else if m := reKey.FindStringSubmatch(st.text); m != nil {
						ctx[m[1]] = typed(t, m[2], m[3])
					} else if m := reNested.FindStringSubmatch(st.text); m != nil {
						ctx[m[1]] = map[string]any{m[2]: m[3]}
					} else if st.text == "the flag was evaluated with details" {
						got, d = resolve(typ, set, key, ctx, def)
					} else if m := reValue.FindStringSubmatch(st.text); m != nil {
						if want := typed(t, typ, m[1]); !reflect.DeepEqual(got, want) {
							t.Errorf("value %#v, want %#v (%+v)", got, want, d)
						}
					} else if m := reReason.FindStringSubmatch(st.text); m != nil {
						if string(d.Reason) != m[1] {
							t.Errorf("reason %s, want %s (%+v)", d.Reason, m[1], d)
						}
					} else if m := reErrorCode.FindStringSubmatch(st.text); m != nil {
						if string(d.ErrorCode) != m[1] {
							t.Errorf("error code %q, want %s (%+v)", d.ErrorCode, m[1], d)
						}
					} else if st.text == "the resolved metadata is empty" {
						if len(d.Metadata) != 0 {
							t.Errorf("metadata %v, want none", d.Metadata)
						}
					} else if st.text == "the resolved metadata should contain" {
						for _, row := range st.table[1:] {
							typ := row[1]
							if typ == "Integer" {
								typ = "Float" // metadata numbers are JSON's
							}
							want := typed(t, typ, row[2])
							if !reflect.DeepEqual(d.Metadata[row[0]], want) {
								t.Errorf("metadata %s = %#v, want %#v", row[0], d.Metadata[row[0]], want)
							}
						}
					} else if st.text != "an evaluator" {
						t.Fatalf("no binding for step %q", st.text)
					}
				}
			})
		}
	}
	if ran < 100 {
		t.Fatalf("only %d scenarios ran", ran)
	}
	t.Logf("%d scenarios", ran)
}

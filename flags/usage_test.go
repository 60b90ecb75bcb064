package flags

import (
	"reflect"
	"sync"
	"testing"
)

// Evaluations are counted by the variant served ("" for the caller's
// default), from parallel callers, and the counts survive a change of the
// flag (KeepUsage) while a flag that did not change keeps its own.
func TestUsage(t *testing.T) {
	set, err := ParseFile([]byte(`{"flags": {
		"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		      "targeting": {"if": [{"==": [{"var": "u"}, "a"]}, "on", {"==": [{"var": "u"}, "b"]}, null, "nope"]}},
		"g": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				set.Evaluate("f", map[string]any{"u": "a"}) // on
				set.Evaluate("f", map[string]any{"u": "b"}) // the default variant, off
				set.Evaluate("f", map[string]any{"u": "c"}) // "nope": no such variant, the caller's default
				set.Evaluate("g", nil)
			}
		}()
	}
	wg.Wait()
	want := map[string]uint64{"on": 800, "off": 800, "": 800}
	if got := set.Flags["f"].Usage(); !reflect.DeepEqual(got, want) {
		t.Fatalf("usage %v, want %v", got, want)
	}
	// f changes (disabled): its counts carry over; g keeps its own.
	disabled := set.Flags["f"].Definition
	disabled.State = Disabled
	next := set.Update(map[string]*Definition{"f": &disabled})
	next.KeepUsage(set)
	next.Evaluate("f", nil)
	want[""]++
	if got := next.Flags["f"].Usage(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the change: %v, want %v", got, want)
	}
	if got := next.Flags["g"].Usage(); got["x"] != 800 {
		t.Fatalf("g: %v", got)
	}
}

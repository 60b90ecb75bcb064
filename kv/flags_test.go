package kv_test

import (
	"strings"
	"testing"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

func flagWrite(key, def string) kv.Write { return kv.Write{Key: key, Text: text(def)} }

// Flags are values under flags.: a write is validated (each problem named
// with its key and the field of the definition, nothing written), $refs
// resolve in the shared part as it is after the change, and a change of the
// shared part that would break a flag is refused.
func TestFlagsOnTheWritePath(t *testing.T) {
	s, _ := newStore(t)
	meta := kv.Meta{Actor: "alice", Action: kv.ActionSet}
	apply := func(ws ...kv.Write) error {
		_, err := s.Apply(ctx(t), meta, ws)
		return err
	}
	refused := func(err error, key, field, reason string) {
		t.Helper()
		for _, e := range cfgerr.All(err) {
			if e.Key == key && e.Field == field && strings.Contains(e.Message, reason) {
				return
			}
		}
		t.Fatalf("want %s %s: ...%s..., got %v", key, field, reason, err)
	}
	// A flag with a $ref to an evaluator that does not exist yet.
	checkout := `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		"targeting": {"if": [{"$ref": "staff"}, "on"]}}`
	refused(apply(flagWrite("flags.new-Checkout", checkout)), "flags.new-Checkout", "targeting.if[0].$ref", `no such evaluator`)
	// With the evaluator, in one change.
	shared := `{"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}}}`
	if err := apply(flagWrite("flags", shared), flagWrite("flags.new-Checkout", checkout)); err != nil {
		t.Fatal(err)
	}
	// Bad definitions: each problem with its field, nothing written.
	err := apply(flagWrite("flags.new-Checkout", `{"state": "ENABLED", "variants": {"on": true, "off": "no"}, "defaultVariant": "maybe",
		"targeting": {"if": [{"sem_ver": [{"var": "v"}, "=~", "1.0"]}, "on"]}}`), flagWrite("flags.other", `{"state": "ENABLED", "variants": {"a": 1}}`))
	refused(err, "flags.new-Checkout", "variants.on", "all of a flag's variants have one type")
	refused(err, "flags.new-Checkout", "defaultVariant", `"maybe" is not one of the variants`)
	refused(err, "flags.new-Checkout", "targeting.if[0].sem_ver", `operator "=~"`)
	if e, _ := s.Get(ctx(t), "flags.other", 0); e != nil && e.Source == kv.SourceCluster {
		t.Fatalf("a change with a bad flag wrote another: %+v", e)
	}
	// The shared part cannot lose an evaluator a flag uses.
	refused(apply(flagWrite("flags", `{"$evaluators": {}}`)), "flags.new-Checkout", "targeting.if[0].$ref", "no such evaluator")
	refused(apply(flagWrite("flags", `{"$evaluators": {"a": {"$ref": "b"}, "b": {"$ref": "a"}}}`)), "flags", "$evaluators.a.$ref.$ref", "refers to itself")
	// Not a flag key, and not an object.
	refused(apply(flagWrite("flags.no space", `{}`)), "flags.no space", "name", "flag key has ' '")
	refused(apply(kv.Write{Key: "flags.x", Value: "on"}), "flags.x", "value", "a flag is a JSON object")
	// What was written reads back, and lists under flags.
	list, err := s.List(ctx(t), "flags", 0)
	if err != nil || len(list) != 2 || list[1].Key != "flags.new-Checkout" {
		t.Fatalf("%+v %v", list, err)
	}
	def := list[1].Value.(map[string]any)
	if def["defaultVariant"] != "off" || def["variants"].(map[string]any)["on"] != true {
		t.Fatalf("%v", def)
	}
}

package provider_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"

	"cfgcluster/etcdtest"
	"cfgcluster/flags/provider"
	"cfgcluster/kv"
	"cfgcluster/watch"
)

func TestMain(m *testing.M) { etcdtest.VerifyNoLeaks(m) }

// An OpenFeature client over the provider: typed details with OpenFeature's
// reasons, variants, metadata and error codes; PROVIDER_CONFIGURATION_CHANGED
// naming the flags a write changed (every flag for the shared evaluators);
// PROVIDER_STALE while etcd is gone, PROVIDER_READY when it is back.
func TestOpenFeatureProvider(t *testing.T) {
	m, etcd := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := kv.New(etcd)
	doc, _ := os.ReadFile("../../examples/schema.yaml")
	if _, err := store.SetSchema(ctx, kv.Meta{Actor: "test"}, doc); err != nil {
		t.Fatal(err)
	}
	set := func(kvs ...string) int64 {
		t.Helper()
		var ws []kv.Write
		for i := 0; i < len(kvs); i += 2 {
			ws = append(ws, kv.Write{Key: kvs[i], Text: &kvs[i+1]})
		}
		r, err := store.Apply(ctx, kv.Meta{Actor: "test", Action: kv.ActionSet}, ws)
		if err != nil {
			t.Fatal(err)
		}
		return r.Revision
	}
	set("flags", `{"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}}}`,
		"flags.new-checkout", `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
			"targeting": {"if": [{"$ref": "staff"}, "on"]}, "metadata": {"team": "web"}}`,
		"flags.limits", `{"state": "ENABLED", "variants": {"small": {"rps": 10}, "big": {"rps": 1000}}, "defaultVariant": "small"}`)

	c, err := watch.New(ctx, etcd, watch.WithProgressInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := provider.New(c, provider.WithStaleAfter(time.Second))
	api := isolated.NewAPI()
	defer api.Shutdown(context.Background())
	type event struct {
		typ of.EventType
		of.EventDetails
	}
	events := make(chan event, 64)
	for _, typ := range []of.EventType{of.ProviderConfigChange, of.ProviderStale, of.ProviderReady} {
		cb := func(d of.EventDetails) { events <- event{typ, d} }
		api.AddHandler(typ, &cb)
	}
	if err := api.SetProviderAndWait(ctx, p); err != nil {
		t.Fatal(err)
	}
	client := api.NewClient()

	staff := of.NewEvaluationContext("u1", map[string]any{"email": "ada@example.com"})
	d, err := client.BooleanValueDetails(ctx, "new-checkout", false, staff)
	if err != nil || !d.Value || d.Variant != "on" || d.Reason != of.TargetingMatchReason || d.FlagMetadata["team"] != "web" {
		t.Fatalf("%+v %v", d, err)
	}
	o, err := client.ObjectValueDetails(ctx, "limits", nil, of.EvaluationContext{})
	if err != nil || o.Value.(map[string]any)["rps"] != float64(10) || o.Reason != of.StaticReason {
		t.Fatalf("%+v %v", o, err)
	}
	if s, err := client.StringValueDetails(ctx, "new-checkout", "x", staff); s.Value != "x" || s.ErrorCode != of.TypeMismatchCode || err == nil {
		t.Fatalf("type mismatch: %+v %v", s, err)
	}
	if b, err := client.BooleanValueDetails(ctx, "missing", true, staff); !b.Value || b.ErrorCode != of.FlagNotFoundCode || err == nil {
		t.Fatalf("not found: %+v %v", b, err)
	}

	next := func(typ of.EventType) event {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case e := <-events:
				if e.typ == typ {
					return e
				}
			case <-timeout:
				t.Fatalf("no %s within 15 s", typ)
			}
		}
	}
	drain := func() {
		for len(events) > 0 {
			<-events
		}
	}
	drain()
	set("flags.limits", `{"state": "DISABLED", "variants": {"small": {"rps": 10}}}`)
	if e := next(of.ProviderConfigChange); !slices.Equal(e.FlagChanges, []string{"limits"}) {
		t.Fatalf("%+v", e)
	}
	set("flags", `{"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.org"]}}}`)
	if e := next(of.ProviderConfigChange); !slices.Equal(e.FlagChanges, []string{"limits", "new-checkout"}) {
		t.Fatalf("%+v", e)
	}
	if d, _ := client.BooleanValueDetails(ctx, "new-checkout", false, staff); d.Value || d.Reason != of.DefaultReason {
		t.Fatalf("after the evaluator changed: %+v", d)
	}

	m.Stop()
	next(of.ProviderStale)
	m.Restart(t)
	next(of.ProviderReady) // with no write: etcd's progress says the flags are current

}

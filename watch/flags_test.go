package watch_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"cfgcluster/flags"
	"cfgcluster/watch"
	"cfgcluster/watch/watchtest"
)

const (
	staffOnly = `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		"targeting": {"if": [{"$ref": "staff"}, "on"]}}`
	banner = `{"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "blue",
		"metadata": {"team": "web"}}`
)

// A service evaluates flags from memory: loaded by the first list, each
// change in effect once WaitRevision returns (before subscribers hear of
// it), the shared evaluators' changes in every flag that names them, a
// deleted flag not found; and from the snapshot while etcd is down.
func TestFlagsInTheClient(t *testing.T) {
	e := setup(t)
	e.set(t, "flags", `{"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}}}`,
		"flags.new-checkout", staffOnly, "flags.banner-color", banner)
	snap := filepath.Join(t.TempDir(), "cfg.snapshot")
	c := newClient(t, e.etcd, watch.WithSnapshotFile(snap))
	ctx := bg(t)
	ada := map[string]any{"targetingKey": "u1", "email": "ada@example.com"}
	bob := map[string]any{"targetingKey": "u2", "email": "bob@elsewhere.org"}

	if !c.IsEnabled(ctx, "new-checkout", ada) || c.IsEnabled(ctx, "new-checkout", bob) {
		t.Fatal("targeting by the shared evaluator")
	}
	if v, d := c.StringFlag(ctx, "banner-color", "#000", nil); v != "#00f" || d.Reason != flags.Static || d.Variant != "blue" || d.Metadata["team"] != "web" {
		t.Fatalf("static: %v %+v", v, d)
	}
	if v, d := c.IntFlag(ctx, "banner-color", 7, nil); v != 7 || d.ErrorCode != flags.TypeMismatch {
		t.Fatalf("type mismatch: %v %+v", v, d)
	}
	var rec watchtest.Recorder
	c.SubscribeFlags("new-*", &rec)

	// Staff is now everyone at example.org: the flag follows its evaluator.
	rev := e.set(t, "flags", `{"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@elsewhere.org"]}}}`)
	if err := c.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if c.IsEnabled(ctx, "new-checkout", ada) || !c.IsEnabled(ctx, "new-checkout", bob) {
		t.Fatal("the changed evaluator")
	}
	// Disabled: the caller's default, with the reason.
	rev = e.set(t, "flags.new-checkout", `{"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}`)
	if err := c.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if v, d := c.BoolFlag(ctx, "new-checkout", true, bob); !v || d.Reason != flags.DisabledReason {
		t.Fatalf("disabled: %v %+v", v, d)
	}
	eventually(t, "the flag's subscriber", func() bool {
		batches, _ := rec.Snapshot()
		return len(batches) == 1 && len(batches[0].Events) == 1 && batches[0].Events[0].Key == "flags.new-checkout"
	})
	all := c.AllFlags(ctx, bob)
	if len(all) != 2 || all["banner-color"].Value != "#00f" || all["new-checkout"].Reason != flags.DisabledReason {
		t.Fatalf("all flags: %+v", all)
	}

	c.Close() // writes the snapshot
	e.m.Stop()
	offline := newClient(t, e.etcd, watch.WithSnapshotFile(snap), watch.WithStartTimeout(300*time.Millisecond))
	if v, d := offline.StringFlag(ctx, "banner-color", "", nil); v != "#00f" || d.Reason != flags.Static {
		t.Fatalf("from the snapshot: %v %+v", v, d)
	}
	if _, d := offline.BoolFlag(ctx, "gone", false, nil); d.ErrorCode != flags.FlagNotFound {
		t.Fatalf("%+v", d)
	}
	os.Remove(snap)
}

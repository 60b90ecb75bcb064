package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/etcdtest"
)

// Flags written through one node, as a flagd file imported with cfgadm,
// reach OpenFeature's own JavaScript SDK through another node's OFREP
// endpoint (npm: @openfeature/server-sdk and @openfeature/ofrep-provider,
// installed by scripts/test.sh): values, variants, reasons and error codes
// as that SDK reads them. A Go service evaluates them in-process, and its
// evaluations reach cfgadm flag usage and flag stale through the instance
// registry.
func TestFlagsAcrossTheCluster(t *testing.T) {
	dir, _ := filepath.Abs("testdata/ofrep")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@openfeature", "ofrep-provider")); err != nil {
		t.Fatalf("OpenFeature's JS packages are not installed: run scripts/test.sh (npm ci --prefix integration/testdata/ofrep): %v", err)
	}
	schema, _ := filepath.Abs("../examples/schema.yaml")
	syncAddr := etcdtest.FreeAddr(t)
	cl := NewCluster(t, Config{Size: 3, Schema: schema, NodeFlags: func(i int) []string {
		if i == 1 {
			return []string{"--flagd-sync-addr", syncAddr, "--flagd-sync-anonymous"}
		}
		return nil
	}})
	n0, n2 := cl.Nodes[0], cl.Nodes[2]
	ctx := ctxT(t)
	file := filepath.Join(t.TempDir(), "flags.json")
	os.WriteFile(file, []byte(`{"flags": {
		"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		                 "targeting": {"if": [{"$ref": "staff"}, "on"]}, "metadata": {"team": "web"}},
		"dark-mode": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
		"limits": {"state": "ENABLED", "variants": {"small": {"rps": 10}, "big": {"rps": 1000}}, "defaultVariant": "small"},
		"max-items": {"state": "ENABLED", "variants": {"few": 10, "many": 500}, "defaultVariant": "few",
		              "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "many"]}}},
		"$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@example.com"]}}}`), 0o600)
	if out, e, code := n0.Adm(ctx, "flag", "import", "-f", file, "-m", "from flagd"); code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, e)
	}
	// Node 2 evaluates from its own watch client: wait until it has the import.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, err := n2.API().EvaluateFlag(ctx, "max-items", nil)
		if err == nil && ev.ErrorCode == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2 has not seen the import within 10 s: %+v %v", ev, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd := exec.CommandContext(ctx, "node", "eval.cjs", n2.URL(), n2.Token())
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node eval.cjs: %v\n%s", err, stderr)
	}
	type details struct {
		Value        any            `json:"value"`
		Variant      string         `json:"variant"`
		Reason       string         `json:"reason"`
		ErrorCode    string         `json:"errorCode"`
		FlagMetadata map[string]any `json:"flagMetadata"`
	}
	var got map[string]details
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	check := func(name string, value any, variant, reason, code string) {
		t.Helper()
		d := got[name]
		v, _ := json.Marshal(d.Value)
		w, _ := json.Marshal(value)
		if string(v) != string(w) || d.Variant != variant || d.Reason != reason || d.ErrorCode != code {
			t.Errorf("%s: %+v, want value %s variant %q reason %s error %q", name, d, w, variant, reason, code)
		}
	}
	check("staff", true, "on", "TARGETING_MATCH", "")
	check("other", false, "off", "DEFAULT", "")
	// A disabled flag's answer is the caller's code default: OFREP 0.3.0
	// answers it with no value (ADR-0006). This provider (0.1.3, the newest
	// on npm) predates that and reads it as a GENERAL error: the caller
	// still gets its default.
	check("disabled", true, "", "ERROR", "GENERAL")
	check("missing", "fallback", "", "ERROR", "FLAG_NOT_FOUND")
	check("object", map[string]any{"rps": 10}, "small", "STATIC", "")
	check("number", 500, "many", "TARGETING_MATCH", "")
	if got["staff"].FlagMetadata["team"] != "web" {
		t.Errorf("metadata: %+v", got["staff"].FlagMetadata)
	}
	// flagd's in-process provider takes the flags from node 1's flagd sync
	// port and evaluates them itself; a change made through node 0 reaches it.
	flagd := exec.CommandContext(ctx, "node", "flagd.cjs", strings.Split(syncAddr, ":")[0], strings.Split(syncAddr, ":")[1])
	flagd.Dir = dir
	var flagdErr strings.Builder
	flagd.Stderr = &flagdErr
	stdout, err := flagd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := flagd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := json.NewDecoder(stdout)
	var before, after struct {
		Before, After details
	}
	if err := lines.Decode(&before); err != nil {
		t.Fatalf("flagd.cjs: %v\n%s", err, flagdErr.String())
	}
	if d := before.Before; d.Value != true || d.Variant != "on" || d.Reason != "TARGETING_MATCH" {
		t.Fatalf("flagd in-process, before: %+v", d)
	}
	if out, e, code := n0.Adm(ctx, "flag", "disable", "new-checkout"); code != 0 {
		t.Fatalf("disable: %s%s", out, e)
	}
	if err := lines.Decode(&after); err != nil {
		t.Fatalf("flagd.cjs after the change: %v\n%s", err, flagdErr.String())
	}
	if d := after.After; d.Value != false || d.Reason != "DISABLED" {
		t.Fatalf("flagd in-process, after disable: %+v", d)
	}
	if err := flagd.Wait(); err != nil {
		t.Fatalf("flagd.cjs: %v\n%s", err, flagdErr.String())
	}
	if out, e, code := n0.Adm(ctx, "flag", "enable", "new-checkout"); code != 0 {
		t.Fatalf("enable: %s%s", out, e)
	}

	// A service evaluates new-checkout 5 times: usage through node 2, and
	// every other flag stale.
	svc := StartService(t, cl.Nodes[1], "shop", "--flag-usage-interval", "200ms")
	for i := range 5 {
		resp, err := http.Get(fmt.Sprintf("%s/flag?key=new-checkout&user=u%d&email=ada@example.com", svc.URL(), i))
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if d["value"] != true || d["reason"] != "TARGETING_MATCH" {
			t.Fatalf("the service's evaluation: %v", d)
		}
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		u, err := n2.API().FlagUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got api.FlagUsage
		for _, f := range u.Flags {
			if f.Flag == "new-checkout" {
				got = f
			}
		}
		if got.Evaluations["on"] == 5 && got.Instances == 1 && got.Last != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage after 5 evaluations: %+v", u)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stale, e, code := n0.Adm(ctx, "flag", "stale", "--days", "1")
	if code != 0 || strings.Contains(stale, "new-checkout") || !strings.Contains(stale, "dark-mode") || !strings.Contains(stale, "never") {
		t.Fatalf("flag stale: exit %d\n%s%s", code, stale, e)
	}
	// The import is one audited change (then the disable and enable).
	hist, err := n2.API().Audit(ctx, "flags.new-checkout", 0, 10)
	if n := len(hist.Records); err != nil || n != 3 || hist.Records[n-1].Comment != "from flagd" || len(hist.Records[n-1].Changes) != 5 {
		t.Fatalf("audit: %+v %v", hist, err)
	}
}

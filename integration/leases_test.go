package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cfgcluster/api"
)

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// get answers a GET of url, presenting token when one is given.
func get(t *testing.T, url string, token ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for _, tok := range token {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// Real service processes register, report what they applied and refused,
// make --wait converge or name the stragglers, obey maintenance windows,
// and vanish when killed.
func TestInstancesRolloutAndMaintenance(t *testing.T) {
	schemaFile, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schemaFile}})
	ctx := ctxT(t)
	strict := filepath.Join(t.TempDir(), "strict.yaml")
	doc, _ := os.ReadFile(schemaFile)
	os.WriteFile(strict, []byte(strings.Replace(string(doc), "max: 256", "max: 64", 1)), 0o644)
	a := StartService(t, n, "billing", "--id", "a", "--ttl", "2")
	b := StartService(t, n, "billing", "--id", "b", "--ttl", "2", "--schema", strict)
	c := n.API()

	waitFor(t, "two instances", 10*time.Second, func() bool {
		l, err := c.Instances(ctx, "billing")
		return err == nil && len(l.Instances) == 2
	})
	out, _, code := n.Adm(ctx, "instances", "billing")
	if code != 0 || !strings.Contains(out, "billing") || strings.Count(out, "\n") != 3 {
		t.Fatalf("cfgadm instances:\n%s", out)
	}

	// --wait returns once every instance has applied the change.
	out, errOut, code := n.Adm(ctx, "set", "taskqueue.max_workers", "32", "--wait", "--timeout", "10s")
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("set --wait: exit %d\n%s%s", code, out, errOut)
	}
	if _, body, _ := get(t, b.URL()+"/config?key=taskqueue.max_workers"); !strings.Contains(body, `"value":32`) {
		t.Fatalf("b serves %s", body)
	}

	// A value b's schema refuses: b reports it and keeps 32; --wait names it.
	out, errOut, code = n.Adm(ctx, "set", "taskqueue.max_workers", "100", "--wait", "--timeout", "3s")
	if code != 4 || !strings.Contains(errOut, "billing/b (rejected: taskqueue.max_workers@") {
		t.Fatalf("set --wait with a rejection: exit %d\n%s%s", code, out, errOut)
	}
	if _, body, _ := get(t, b.URL()+"/config?key=taskqueue.max_workers"); !strings.Contains(body, `"value":32`) {
		t.Fatalf("b did not keep its last valid value: %s", body)
	}
	if _, body, _ := get(t, a.URL()+"/config?key=taskqueue.max_workers"); !strings.Contains(body, `"value":100`) {
		t.Fatalf("a serves %s", body)
	}
	out, _, _ = n.Adm(ctx, "instances", "-o", "wide") // whole reasons: a table cuts long cells
	if !strings.Contains(out, "taskqueue.max_workers@") || !strings.Contains(out, "above the maximum 64") {
		t.Fatalf("instances should show b's rejection:\n%s", out)
	}

	// A paused instance is a straggler, named when --wait times out.
	b.Signal(syscall.SIGKILL)
	waitFor(t, "b to vanish after SIGKILL", 10*time.Second, func() bool {
		l, err := c.Instances(ctx, "billing")
		return err == nil && len(l.Instances) == 1
	})
	a.Signal(syscall.SIGSTOP)
	res, err := c.SetWait(ctx, "taskqueue.max_workers", api.SetRequest{Text: ptr("40")}, 700*time.Millisecond)
	if err != nil || res.Rollout == nil || res.Rollout.Converged || len(res.Rollout.Stragglers) != 1 || res.Rollout.Stragglers[0].ID != "a" {
		t.Fatalf("rollout with a paused instance: %+v %v", res.Rollout, err)
	}
	a.Signal(syscall.SIGCONT)
	waitFor(t, "a to catch up", 10*time.Second, func() bool {
		ro, err := c.Rollout(ctx, res.Revision)
		return err == nil && ro.Converged
	})
	out, _, code = n.Adm(ctx, "rollout", "status", itoa(res.Revision))
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("rollout status: exit %d\n%s", code, out)
	}

	// Maintenance: the service answers 503 within moments, health checks pass.
	if _, e, code := n.Adm(ctx, "maintenance", "on", "--scope", "billing", "--reason", "db upgrade", "--for", "10m"); code != 0 {
		t.Fatal(e)
	}
	waitFor(t, "503", 2*time.Second, func() bool { code, _, _ := get(t, a.URL()+"/orders"); return code == 503 })
	code2, body, hdr := get(t, a.URL()+"/orders")
	if code2 != 503 || !strings.Contains(body, "db upgrade") || hdr.Get("Retry-After") == "" {
		t.Fatalf("maintenance answer: %d %s %v", code2, body, hdr)
	}
	if code, _, _ := get(t, a.URL()+"/healthz"); code != 200 {
		t.Fatal("health checks are exempt")
	}
	out, _, _ = n.Adm(ctx, "maintenance", "list")
	if !strings.Contains(out, "db upgrade") {
		t.Fatalf("maintenance list:\n%s", out)
	}
	if _, e, code := n.Adm(ctx, "maintenance", "off", "--scope", "billing"); code != 0 {
		t.Fatal(e)
	}
	waitFor(t, "200 again", 2*time.Second, func() bool { code, _, _ := get(t, a.URL()+"/orders"); return code == 200 })

	// A requires_restart key: the instance keeps its start value and lists the restart.
	if _, e, code := n.Adm(ctx, "set", "db.password", "s3cret"); code != 0 {
		t.Fatal(e)
	}
	waitFor(t, "a pending restart", 5*time.Second, func() bool {
		out, _, _ := n.Adm(ctx, "restarts", "--pending")
		return strings.Contains(out, "db.password")
	})
	var v map[string]any
	_, body, _ = get(t, a.URL()+"/config?key=db.password")
	json.Unmarshal([]byte(body), &v)
	if v != nil && v["value"] == "s3cret" {
		t.Fatal("a requires_restart value was applied without a restart")
	}
}

func ptr(s string) *string { return &s }

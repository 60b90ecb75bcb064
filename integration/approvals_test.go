package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cfgcluster/api"
)

// Two-person approval across a 3-node cluster: a change of a key that needs
// approval, made through one node, is a proposal; it is listed through
// another, refused to its author, to a viewer and to a second approval by
// one approver, and applied by another approver through a third node; a
// break-glass change needs admin and a reason, and is audited as forced.
func TestApprovalsAcrossTheCluster(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	n0, n1, n2 := cl.Nodes[0], cl.Nodes[1], cl.Nodes[2]
	ctx := ctxT(t)
	run := func(n *Node, want int, args ...string) string {
		t.Helper()
		out, e, code := n.Adm(ctx, args...)
		if code != want {
			t.Fatalf("cfgadm %v via %s: exit %d, want %d\n%s%s", args, n.Name, code, want, out, e)
		}
		return out + e
	}
	run(n0, 0, "role", "create", "lead", "--verbs", "read,write,approve", "--prefix", "payments.")
	token := func(name, role string) string {
		out, e, code := n0.Adm(ctx, "token", "create", name, "--role", role, "--subject", name)
		if code != 0 {
			t.Fatalf("token create: %s%s", out, e)
		}
		f := filepath.Join(t.TempDir(), name+".token")
		if err := os.WriteFile(f, []byte(strings.TrimSpace(out)), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	alice, bob, carol, dave := token("alice", "editor"), token("bob", "approver"), token("carol", "viewer"), token("dave", "lead")

	out := run(n0, 0, "--token-file", alice, "set", "payments.live_mode", "true", "-m", "go live")
	id := regexp.MustCompile(`proposed as (p-[0-9a-f-]+)`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no proposal:\n%s", out)
	}
	if v := run(n1, 0, "get", "payments.live_mode"); !strings.Contains(v, "false") {
		t.Fatalf("a proposal changed the value:\n%s", v)
	}
	run(n0, 4, "--token-file", alice, "set", "payments.live_mode", "true", "--no-propose")
	if l := run(n1, 0, "proposals"); !strings.Contains(l, id[1]) || !strings.Contains(l, "0/1") {
		t.Fatalf("proposals via n1:\n%s", l)
	}
	if s := run(n2, 0, "proposal", "show", id[1]); !strings.Contains(s, "payments.live_mode") || !strings.Contains(s, "true") {
		t.Fatalf("proposal show:\n%s", s)
	}
	run(n1, 6, "--token-file", carol, "approve", id[1])
	run(n1, 6, "--token-file", alice, "approve", id[1])
	if s := run(n2, 0, "--token-file", bob, "approve", id[1], "-m", "checked with finance"); !strings.Contains(s, "applied") {
		t.Fatalf("approve:\n%s", s)
	}
	run(n1, 4, "--token-file", dave, "approve", id[1]) // applied already
	if v := run(n1, 0, "get", "payments.live_mode"); !strings.Contains(v, "true") || !strings.Contains(v, "alice") {
		t.Fatalf("after approval via n2, read via n1:\n%s", v)
	}
	audit := func(n *Node) api.AuditRecord {
		t.Helper()
		out, e, code := n.Adm(ctx, "-o", "json", "audit", "--key", "payments.live_mode", "--limit", "1")
		var l api.AuditList
		if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil || len(l.Records) != 1 {
			t.Fatalf("audit: %v %s%s", err, out, e)
		}
		return l.Records[0]
	}
	if rec := audit(n0); rec.Actor != "alice" || rec.Proposal != id[1] || len(rec.Approvers) != 1 || rec.Approvers[0] != "bob" {
		t.Fatalf("audit record of the approved change: %+v", rec)
	}

	// Its author may not approve it, and dave's own proposal needs another.
	out = run(n2, 0, "--token-file", dave, "set", "payments.live_mode", "false")
	own := regexp.MustCompile(`proposed as (p-[0-9a-f-]+)`).FindStringSubmatch(out)
	if e := run(n0, 6, "--token-file", dave, "approve", own[1]); !strings.Contains(e, "may not approve") {
		t.Fatalf("self-approval:\n%s", e)
	}
	run(n0, 0, "--token-file", dave, "withdraw", own[1])

	// Break-glass: admin only, with a reason, audited as forced.
	run(n1, 6, "--token-file", alice, "set", "payments.live_mode", "false", "--force", "--reason", "fraud")
	run(n1, 2, "set", "payments.live_mode", "false", "--force")
	if s := run(n1, 0, "set", "payments.live_mode", "false", "--force", "--reason", "incident 7: fraud spike"); !strings.Contains(s, "FORCED") {
		t.Fatalf("forced:\n%s", s)
	}
	if rec := audit(n2); !rec.Forced || rec.Comment != "incident 7: fraud spike" {
		t.Fatalf("audit of the forced change: %+v", rec)
	}
}

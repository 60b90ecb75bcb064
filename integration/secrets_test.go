package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Secrets across a 3-node cluster: set through one node, sealed in etcd
// (raw reads through every member see no plaintext), revealed through
// another, a key rotated for db. through a third and every value
// re-sealed, the db. keys exported to a service that opens db.password and
// nothing else, while a service without them reads a sealed error.
func TestSecretsAcrossTheCluster(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	n0, n1, n2 := cl.Nodes[0], cl.Nodes[1], cl.Nodes[2]
	ctx := ctxT(t)
	adm := func(n *Node, args ...string) string {
		t.Helper()
		out, e, code := n.Adm(ctx, args...)
		if code != 0 {
			t.Fatalf("cfgadm %v via %s: exit %d\n%s%s", args, n.Name, code, out, e)
		}
		return out
	}
	const secret = "pg-0d9e4c7f2a"
	adm(n0, "set", "db.password", secret, "-m", "the first password")
	for _, n := range cl.Nodes {
		cfg := cl.Etcd()
		cfg.Endpoints = []string{n.Client}
		etcd, err := clientv3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := etcd.Get(ctx, "/cfgcluster/", clientv3.WithPrefix(), clientv3.WithSerializable())
		etcd.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if bytes.Contains(kv.Value, []byte(secret)) {
				t.Fatalf("%s holds the secret in clear on %s", kv.Key, n.Name)
			}
		}
	}
	if out := adm(n1, "get", "db.password"); strings.Contains(out, secret) {
		t.Fatalf("a plain get shows the secret:\n%s", out)
	}
	if out := adm(n1, "get", "db.password", "--reveal", "-m", "checking"); !strings.Contains(out, secret) {
		t.Fatalf("reveal through another node:\n%s", out)
	}
	adm(n2, "keys", "rotate", "--prefix", "db.", "-m", "the db team's own key")
	if out := adm(n0, "keys", "reencrypt"); !strings.Contains(out, "re-sealed 1 value") {
		t.Fatalf("reencrypt:\n%s", out)
	}
	if out := adm(n1, "keys", "status"); !strings.Contains(out, "db.") {
		t.Fatalf("status:\n%s", out)
	}
	ring := filepath.Join(t.TempDir(), "db.keyring")
	adm(n2, "keys", "export", "--prefix", "db.", "--out", ring)

	withKeys := StartService(t, n1, "billing", "--keyring", ring)
	without := StartService(t, n2, "payments")
	fingerprint := func(s *Service) (string, int) {
		resp, err := http.Get(s.URL() + "/config?key=db.password")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if bytes.Contains(body, []byte(secret)) {
			t.Fatalf("the service shows the secret: %s", body)
		}
		var v struct {
			SHA256 string `json:"sha256"`
		}
		json.Unmarshal(body, &v)
		if resp.StatusCode != 200 && !strings.Contains(string(body), "sealed") {
			t.Fatalf("a service's refusal does not say the value is sealed: %d %s", resp.StatusCode, body)
		}
		return v.SHA256, resp.StatusCode
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	if got, code := fingerprint(withKeys); code != 200 || got != sum(secret) {
		t.Fatalf("the service with the db. keys: %d %s", code, got)
	}
	if _, code := fingerprint(without); code == 200 {
		t.Fatal("a service without the keys read the secret")
	}
	// A new password set through another node: db.password requires a
	// restart, so the running service keeps the one it started with, and
	// a service started now opens the new one.
	adm(n2, "set", "db.password", secret+"-2")
	fresh := StartService(t, n1, "billing", "--keyring", ring, "--id", "b2")
	waitFor(t, "the new password in a new service", 10*time.Second, func() bool {
		got, _ := fingerprint(fresh)
		return got == sum(secret+"-2")
	})
	if got, _ := fingerprint(withKeys); got != sum(secret) {
		t.Fatal("a requires_restart secret changed in a running service")
	}
}

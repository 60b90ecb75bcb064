package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/adapters"
	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/kv"
	"cfgcluster/node"
	"cfgcluster/watch"
)

// etcdctl runs Debian's etcdctl (3.4, the v3 API) against endpoint as user
// (user:password, or "" for none) and returns its combined output.
func etcdctl(t *testing.T, endpoint, user string, args ...string) (string, error) {
	t.Helper()
	if user != "" {
		args = append([]string{"--user", user}, args...)
	}
	cmd := exec.Command("etcdctl", append([]string{"--endpoints", endpoint, "--dial-timeout", "3s", "--command-timeout", "5s"}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Every cluster's members refuse anonymous etcd clients, on every member
// (the last member of a new cluster to start turns etcd's auth on), and a
// node's own credential is in its data directory, readable by it only.
func TestEtcdRefusesAnonymousClients(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	for _, n := range cl.Nodes {
		fi, err := os.Stat(node.EtcdCredentialFile(n.DataDir))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: etcd credential file: %v %v", n.Name, fi, err)
		}
		if cc := n.Etcd(); cc.Username != auth.NodeUser(n.Name) {
			t.Fatalf("%s logs in to etcd as %q", n.Name, cc.Username)
		}
		out, err := etcdctl(t, n.Client, "", "get", "--prefix", "/cfgcluster/")
		if err == nil || !strings.Contains(out, "user name is empty") {
			t.Fatalf("%s: anonymous etcdctl get: %v\n%s", n.Name, err, out)
		}
		out, err = etcdctl(t, n.Client, "", "put", "/cfgcluster/v1/values/log.level", "raw")
		if err == nil || !strings.Contains(out, "user name is empty") {
			t.Fatalf("%s: anonymous etcdctl put: %v\n%s", n.Name, err, out)
		}
		if out, err := etcdctl(t, n.Client, auth.NodeUser(n.Name)+":wrong", "get", "x"); err == nil || !strings.Contains(out, "authentication failed") {
			t.Fatalf("%s: a wrong password: %v\n%s", n.Name, err, out)
		}
	}
	// The nodes' own users work, and write through the API still does.
	if _, err := cl.API(1).Set(ctxT(t), "log.level", api.SetRequest{Value: "warn"}); err != nil {
		t.Fatal(err)
	}
	if out, err := etcdctl(t, cl.Nodes[2].Client, cl.Nodes[2].Etcd().Username+":"+cl.Nodes[2].Etcd().Password, "get", "--print-value-only", "/cfgcluster/v1/values/log.level"); err != nil || !strings.Contains(out, "warn") {
		t.Fatalf("the node's own etcd user: %v\n%s", err, out)
	}
}

// A service account reads the client range and writes its own instances,
// and nothing else: checked with etcdctl, and with the watch client and the
// instance registry a service runs.
func TestServiceAccounts(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 1, Schema: schema})
	n := cl.Nodes[0]
	ctx := ctxT(t)
	if _, err := n.API().Set(ctx, "log.level", api.SetRequest{Value: "warn"}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "billing.etcd-credential")
	out, errOut, code := n.Adm(ctx, "service-account", "create", "billing", "--out", file, "-m", "billing's workers")
	if code != 0 || !strings.Contains(out, "etcd user billing") || strings.Contains(out+errOut, "password") {
		t.Fatalf("service-account create: exit %d\n%s%s", code, out, errOut)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file: %v %v", fi, err)
	}
	cred, err := auth.ReadEtcdCredential(file)
	if err != nil || cred.User != "billing" {
		t.Fatalf("credential: %+v %v", cred.User, err)
	}
	if out, _, code := n.Adm(ctx, "service-account", "list"); code != 0 || !strings.Contains(out, "cfgcluster.service.billing") {
		t.Fatalf("service-account list: %s", out)
	}
	if _, e, code := n.Adm(ctx, "service-account", "create", "billing", "--out", file+"2"); code == 0 || !strings.Contains(e, "exists") {
		t.Fatalf("a second service account of one name: exit %d %s", code, e)
	}
	if _, e, code := n.Adm(ctx, "service-account", "create", "cfgnode.n1"); code == 0 || !strings.Contains(e, "reserved") {
		t.Fatalf("a node's user name: exit %d %s", code, e)
	}
	user := cred.User + ":" + cred.Password
	allowed := [][]string{
		{"get", "--print-value-only", "/cfgcluster/v1/values/log.level"},
		{"get", "--prefix", "--keys-only", "/cfgcluster/v1/maintenance/"},
		{"put", "/cfgcluster/v1/instances/billing/i1", "{}"},
		{"del", "/cfgcluster/v1/instances/billing/i1"},
	}
	for _, args := range allowed {
		if out, err := etcdctl(t, n.Client, user, args...); err != nil {
			t.Fatalf("service account may %v: %v\n%s", args, err, out)
		}
	}
	refused := [][]string{
		{"put", "/cfgcluster/v1/values/log.level", "raw"},
		{"del", "/cfgcluster/v1/values/log.level"},
		{"put", "/cfgcluster/v1/schema", "keys: {}"},
		{"put", "/cfgcluster/v1/instances/payments/i1", "{}"},
		{"put", "/cfgcluster/v1/maintenance/global", "{}"},
		{"get", "--prefix", "/cfgcluster/v1/audit/"},
		{"get", "--prefix", "/cfgcluster/v1/auth/"},
		{"get", "--prefix", "/cfgcluster/v1/keys/"}, // the wrapped data keys
		{"get", "/cfgcluster/v1/keys-version"},
		{"user", "list"},
	}
	for _, args := range refused {
		if out, err := etcdctl(t, n.Client, user, args...); err == nil || !strings.Contains(out, "permission denied") {
			t.Fatalf("service account may not %v: %v\n%s", args, err, out)
		}
	}
	if v, _ := n.API().Get(ctx, "log.level", 0); v == nil || v.Value != "warn" {
		t.Fatalf("the refused writes changed log.level: %+v", v)
	}

	// What a service runs: the watch client and the instance registry.
	etcd, err := clientv3.New(cred.Config(clientv3.Config{Endpoints: []string{n.Client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}))
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	wc, err := watch.New(ctx, etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	if v := wc.String("log.level", ""); v != "warn" {
		t.Fatalf("watch client: log.level is %q", v)
	}
	if _, err := n.API().Set(ctx, "log.level", api.SetRequest{Value: "error"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the service's watch to see the change", 5*time.Second, func() bool {
		return wc.String("log.level", "") == "error"
	})
	reg, err := adapters.Register(ctx, etcd, wc, kv.Instance{Service: "billing", ID: "i1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the instance to be listed", 5*time.Second, func() bool {
		l, err := n.API().Instances(ctx, "billing")
		return err == nil && len(l.Instances) == 1
	})
	reg.Close()
	if _, err := adapters.Register(ctx, etcd, wc, kv.Instance{Service: "payments", ID: "i1"}); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("registering as another service: %v", err)
	}

	// Deleted, the account's credential logs in no more.
	if out, e, code := n.Adm(ctx, "service-account", "delete", "billing"); code != 0 {
		t.Fatalf("service-account delete: %s%s", out, e)
	}
	if out, err := etcdctl(t, n.Client, user, "get", "/cfgcluster/v1/values/log.level"); err == nil || !strings.Contains(out, "authentication failed") {
		t.Fatalf("a deleted service account: %v\n%s", err, out)
	}
	a, err := n.API().Audit(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var made, deleted bool
	for _, r := range a.Records {
		for _, ch := range r.Changes {
			made = made || ch.Key == "auth/service-accounts/billing" && !ch.Deleted && r.Comment == "billing's workers"
			deleted = deleted || ch.Key == "auth/service-accounts/billing" && ch.Deleted
		}
	}
	if !made || !deleted {
		t.Fatalf("audit records of the service account: made %v, deleted %v", made, deleted)
	}
	// Neither password is in the node's log, nor in the audit trail.
	log, _ := os.ReadFile(n.LogPath)
	trail, _ := json.Marshal(a)
	for _, secret := range []string{cred.Password, n.Etcd().Password} {
		if strings.Contains(string(log), secret) || strings.Contains(string(trail), secret) {
			t.Fatal("an etcd password in the node's log or the audit trail")
		}
	}
}

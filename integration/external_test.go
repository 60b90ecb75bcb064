package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/etcdtest"
)

// externalEtcd is Debian's etcd-server package (3.4): .ci/run and
// scripts/test.sh install it.
const externalEtcd = "/usr/bin/etcd"

// startExternalEtcd runs Debian's etcd on loopback ports until the test ends.
func startExternalEtcd(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(externalEtcd); err != nil {
		t.Fatalf("%s is missing: install Debian's etcd-server package (scripts/test.sh does): %v", externalEtcd, err)
	}
	dir := t.TempDir()
	client, peer := "http://"+etcdtest.FreeAddr(t), "http://"+etcdtest.FreeAddr(t)
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd := exec.Command(externalEtcd, "--name", "ext", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "ext="+peer)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "etcd 3.4 to serve", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Get(ctx, "probe")
		return err == nil
	})
	// Turn on authentication, so the node must log in.
	ctx := ctxT(t)
	for _, step := range []func() error{
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "root", "s3cret"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enabling etcd auth: %v", err)
		}
	}
	return client
}

// cfgnode in external mode against Debian's etcd 3.4 with authentication:
// validated writes, history, rollback, the watch stream and cluster status.
func TestExternalEtcd(t *testing.T) {
	endpoint := startExternalEtcd(t)
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema, "--etcd-endpoints", endpoint, "--etcd-user", "root:s3cret"}})
	ctx := ctxT(t)
	waitFor(t, "readiness", 10*time.Second, func() bool { code, _, _ := get(t, n.URL()+"/readyz"); return code == 200 })
	for _, c := range []struct {
		code int
		args []string
		want string
	}{
		{0, []string{"set", "session.idle_timeout", "20m"}, "20m0s"},
		{2, []string{"set", "session.idle_timeout", "9h"}, "must not exceed"},
		{0, []string{"set", "session.idle_timeout", "30m"}, "30m0s"},
		{0, []string{"get", "session.idle_timeout"}, "30m0s"},
		{0, []string{"history", "session.idle_timeout"}, "20m0s"},
		{0, []string{"cluster", "status"}, "3.4.23"},
		// Sealing, re-sealing and proposals on etcd 3.4 with its defaults.
		{0, []string{"set", "db.password", "s3cr3t-ext"}, "db.password"},
		{0, []string{"get", "db.password", "--reveal"}, "s3cr3t-ext"},
		{0, []string{"keys", "rotate", "--prefix", "db."}, "now seals new values of db."},
		{0, []string{"keys", "reencrypt"}, "re-sealed 1 value"},
		{0, []string{"get", "db.password", "--reveal"}, "s3cr3t-ext"},
		{0, []string{"set", "payments.live_mode", "true"}, "proposed as"},
		{0, []string{"proposals"}, "payments.live_mode"},
	} {
		out, errOut, code := n.Adm(ctx, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Fatalf("cfgadm %v: exit %d\n%s%s", c.args, code, out, errOut)
		}
	}
	h, err := n.API().History(ctx, "session.idle_timeout", 0)
	if err != nil || len(h.Entries) != 2 {
		t.Fatalf("history: %+v %v", h, err)
	}
	if _, e, code := n.Adm(ctx, "rollback", "session.idle_timeout", "--to", itoa(h.Entries[1].Revision)); code != 0 {
		t.Fatal(e)
	}
	if out, _, _ := n.Adm(ctx, "get", "session.idle_timeout"); !strings.Contains(out, "20m0s") {
		t.Fatalf("after rollback: %s", out)
	}
	// Wrong credentials are refused at start, clearly.
	bad := newNode(t, "bad", "http://"+etcdtest.FreeAddr(t))
	cmd := exec.Command(filepath.Join(Binaries(t), "cfgnode"), append(bad.Args, "--etcd-endpoints", endpoint, "--etcd-user", "root:wrong")...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "authentication failed") {
		t.Fatalf("a node with a wrong password started: %s", out)
	}

	// The roles an operator makes (docs/OPERATIONS.md): a user that may
	// write only part of the prefix is refused at start, naming what it
	// lacks; one with readwrite on the whole prefix runs, but may not make
	// etcd users (service accounts need etcd's root role).
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Username: "root", Password: "s3cret", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for user, prefix := range map[string]string{"narrow": "/cfgcluster/v1/values/", "cfgnode": "/cfgcluster/"} {
		for _, step := range []func() error{
			func() error { _, err := root.RoleAdd(ctx, user); return err },
			func() error {
				_, err := root.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
				return err
			},
			func() error { _, err := root.UserAdd(ctx, user, "pw-"+user); return err },
			func() error { _, err := root.UserGrantRole(ctx, user, user); return err },
		} {
			if err := step(); err != nil {
				t.Fatalf("etcd user %s: %v", user, err)
			}
		}
	}
	narrow := newNode(t, "narrow", "http://"+etcdtest.FreeAddr(t))
	out, err = exec.Command(filepath.Join(Binaries(t), "cfgnode"), append(narrow.Args, "--etcd-endpoints", endpoint, "--etcd-user", "narrow:pw-narrow")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `etcd user "narrow" may not read and write every key under /cfgcluster/`) {
		t.Fatalf("a node whose etcd user may not write the whole prefix: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "pw-narrow") {
		t.Fatalf("the password is in the error: %s", out)
	}
	// A second node on the same etcd, given the first node's keyring, as
	// every node of a cluster must be: it reads the secret set through
	// the first.
	scoped := StartNode(t, NodeConfig{Name: "scoped", Flags: []string{"--etcd-endpoints", endpoint, "--etcd-user", "cfgnode:pw-cfgnode",
		"--encryption-keyring", n.DataDir + ".keyring"}})
	if _, e, code := scoped.Adm(ctx, "set", "log.level", "warn"); code != 0 {
		t.Fatal(e)
	}
	if out, e, code := scoped.Adm(ctx, "get", "db.password", "--reveal"); code != 0 || !strings.Contains(out, "s3cr3t-ext") {
		t.Fatalf("the secret through the second node: exit %d %s%s", code, out, e)
	}
	if _, e, code := scoped.Adm(ctx, "service-account", "create", "billing"); code != 6 || !strings.Contains(e, "root role") {
		t.Fatalf("service-account create with a node that is not etcd's root: exit %d %s", code, e)
	}
	// Through a node that is etcd's root, on etcd 3.4 with its defaults, a
	// service account reads values and may not write them.
	accountFile := filepath.Join(t.TempDir(), "billing.etcd-credential")
	if _, e, code := n.Adm(ctx, "service-account", "create", "billing", "--out", accountFile); code != 0 {
		t.Fatalf("service-account create on etcd 3.4: %s", e)
	}
	account, err := auth.ReadEtcdCredential(accountFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := etcdctl(t, endpoint, account.User+":"+account.Password, "get", "--print-value-only", "/cfgcluster/v1/values/log.level"); err != nil || !strings.Contains(out, "warn") {
		t.Fatalf("a service account's read on etcd 3.4: %v %s", err, out)
	}
	if out, err := etcdctl(t, endpoint, account.User+":"+account.Password, "put", "/cfgcluster/v1/values/log.level", "raw"); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("a service account's write on etcd 3.4: %v %s", err, out)
	}
	// Through a node that is etcd's root, a service account never takes
	// over an etcd user the operator made (its password would change).
	if _, e, code := n.Adm(ctx, "service-account", "create", "cfgnode"); code != 4 || !strings.Contains(e, `etcd has a user named "cfgnode" already`) {
		t.Fatalf("a service account named as an existing etcd user: exit %d %s", code, e)
	}
	if _, e, code := scoped.Adm(ctx, "set", "log.level", "error"); code != 0 {
		t.Fatalf("the node whose etcd user has that name: %s", e)
	}
}

// cfgnode in external mode over TLS with client certificates, against
// Debian's etcd 3.4.
func TestExternalEtcdTLS(t *testing.T) {
	if _, err := os.Stat(externalEtcd); err != nil {
		t.Fatalf("%s is missing: install Debian's etcd-server package (scripts/test.sh does): %v", externalEtcd, err)
	}
	certs := MakeTLS(t)
	dir := t.TempDir()
	client, peer := "https://"+etcdtest.FreeAddr(t), "http://"+etcdtest.FreeAddr(t)
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd := exec.Command(externalEtcd, "--name", "ext", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "ext="+peer,
		"--cert-file", certs.ServerCert, "--key-file", certs.ServerKey, "--trusted-ca-file", certs.CA, "--client-cert-auth")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	schema, _ := filepath.Abs("../examples/schema.yaml")
	flags := []string{"--schema", schema, "--etcd-endpoints", client, "--etcd-cacert", certs.CA}
	// Without a client certificate etcd refuses the node.
	bad := newNode(t, "nocert", "http://"+etcdtest.FreeAddr(t))
	waitFor(t, "etcd to listen", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(client, "https://"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	out, err := exec.Command(filepath.Join(Binaries(t), "cfgnode"), append(bad.Args, flags...)...).CombinedOutput()
	if err == nil {
		t.Fatalf("a node without a client certificate started: %s", out)
	}
	n := StartNode(t, NodeConfig{Flags: append(flags, "--etcd-cert", certs.ClientCert, "--etcd-key", certs.ClientKey)})
	ctx := ctxT(t)
	if _, e, code := n.Adm(ctx, "set", "log.level", "warn"); code != 0 {
		t.Fatal(e)
	}
	if out, _, _ := n.Adm(ctx, "get", "log.level"); !strings.Contains(out, "warn") {
		t.Fatalf("get over TLS: %s", out)
	}
}

// Whole-namespace changes on etcd 3.4 with its defaults (--max-txn-ops 128,
// 1.5 MiB requests): a schema change and a rollback of every key work with
// 300 values, through a cfgnode in external mode.
func TestExternalEtcdWholeNamespace(t *testing.T) {
	endpoint := startExternalEtcd(t)
	n := StartNode(t, NodeConfig{Flags: []string{"--etcd-endpoints", endpoint, "--etcd-user", "root:s3cret"}})
	ctx := ctxT(t)
	c := n.API()
	const keys = 300
	var doc strings.Builder
	doc.WriteString("keys:\n")
	for i := range keys {
		fmt.Fprintf(&doc, "  ns.k%03d: {type: int, max: 1000}\n", i)
	}
	if _, err := c.ApplySchema(ctx, api.SchemaRequest{Document: doc.String()}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < keys; i += 50 { // within etcd's default 128 operations: a value and an audit entry a key
		var ch []api.Change
		for j := i; j < i+50; j++ {
			ch = append(ch, api.Change{Key: fmt.Sprintf("ns.k%03d", j), Value: j})
		}
		if _, err := c.Apply(ctx, api.ApplyRequest{Changes: ch}); err != nil {
			t.Fatal(err)
		}
	}
	base, err := c.Set(ctx, "ns.k000", api.SetRequest{Value: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplySchema(ctx, api.SchemaRequest{Document: strings.ReplaceAll(doc.String(), "max: 1000", "max: 2000")}); err != nil {
		t.Fatalf("schema change over %d values: %v", keys, err)
	}
	if _, err := c.Apply(ctx, api.ApplyRequest{Changes: []api.Change{{Key: "ns.k000", Value: 5}, {Key: "ns.k299", Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Rollback(ctx, api.RollbackRequest{All: true, To: base.Revision})
	if err != nil || len(r.Changes) != 2 {
		t.Fatalf("rollback of %d values: %+v %v", keys, r, err)
	}
	if v, err := c.Get(ctx, "ns.k299", 0); err != nil || fmt.Sprint(v.Value) != "299" {
		t.Fatalf("ns.k299 after rollback: %+v %v", v, err)
	}
}

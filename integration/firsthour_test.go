package integration

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
)

// What a newcomer meets when cfgadm points at the wrong place: a stopped
// node gets a hint, an etcd client port is named as not a cfgnode API (exit
// 5, never a 404 that reads like a missing key), and host:port works.
func TestAdmEndpoints(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	for _, tc := range []struct {
		endpoint string
		code     int
		want     []string
	}{
		{n.APIAddr, 0, []string{"info"}}, // no scheme
		{n.Client, 5, []string{"is not a cfgnode API", "listens on 127.0.0.1:7380 by default"}},
		{"127.0.0.1:1", 5, []string{"cannot reach", "is cfgnode running there?"}},
	} {
		out, errOut, code := n.Adm(ctx, "--endpoint", tc.endpoint, "get", "log.level")
		if code != tc.code {
			t.Errorf("--endpoint %s: exit %d, want %d\n%s%s", tc.endpoint, code, tc.code, out, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out+errOut, w) {
				t.Errorf("--endpoint %s: no %q in\n%s%s", tc.endpoint, w, out, errOut)
			}
		}
	}
	// Completion offers the node's keys after a command that takes one,
	// and the commands at the top.
	out, _, _ := n.Adm(ctx, "get", "--generate-bash-completion")
	if !strings.Contains(out, "session.idle_timeout\n") || !strings.Contains(out, "db.password\n") {
		t.Errorf("completion of get:\n%s", out)
	}
	out, _, _ = n.Adm(ctx, "--generate-bash-completion")
	if !strings.Contains(out, "rollback") || !strings.Contains(out, "maintenance") {
		t.Errorf("completion of commands:\n%s", out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out, _, code := n.Adm(ctx, "completion", shell); code != 0 || !strings.Contains(out, "--generate-bash-completion") {
			t.Errorf("completion %s: exit %d\n%s", shell, code, out)
		}
	}
	// The bash script completes through a real bash.
	script, _, _ := n.Adm(ctx, "completion", "bash")
	cmd := exec.CommandContext(ctx, "bash", "--norc", "--noprofile", "-c", script+`
COMP_WORDS=(cfgadm get sess); COMP_CWORD=2; _cfgadm; printf '%s\n' "${COMPREPLY[@]}"`)
	cmd.Env = append(n.AdmEnv(), "PATH="+Binaries(t)+":"+os.Getenv("PATH"), "CFGADM_ENDPOINT="+n.URL())
	got, err := cmd.Output()
	if err != nil || !strings.Contains(string(got), "session.idle_timeout") || strings.Contains(string(got), "log.level") {
		t.Errorf("bash completion of 'cfgadm get sess': %v\n%s", err, got)
	}
}

// On a terminal, set --wait shows the rollout as it converges.
func TestAdmWaitShowsProgressOnATerminal(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	StartService(t, n, "billing", "--id", "a")
	waitFor(t, "the instance", 10*time.Second, func() bool {
		l, err := n.API().Instances(ctx, "billing")
		return err == nil && len(l.Instances) == 1
	})
	// script(1) gives cfgadm a pseudo-terminal.
	line := filepath.Join(Binaries(t), "cfgadm") + " --endpoint " + n.URL() + " set taskqueue.max_workers 16 --wait --timeout 20s"
	sc := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	sc.Env = n.AdmEnv()
	out, err := sc.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 of 1 instances applied") || !strings.Contains(string(out), "applied") {
		t.Fatalf("set --wait on a terminal: %v\n%s", err, out)
	}
	// Not a terminal: no progress line, the same result.
	stdout, stderr, code := n.Adm(ctx, "set", "taskqueue.max_workers", "17", "--wait", "--timeout", "20s")
	if code != 0 || strings.Contains(stdout+stderr, "instances applied") || !strings.Contains(stdout, "applied") {
		t.Fatalf("set --wait in a pipe: exit %d\n%s%s", code, stdout, stderr)
	}
}

// cfgnode on a terminal logs for people and says what to do next; a port
// that is taken is named with its flag, with no stack trace and nothing
// started.
func TestNodeFirstStart(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	bin := filepath.Join(Binaries(t), "cfgnode")
	out, err := exec.CommandContext(ctx, bin, "--data-dir", t.TempDir(), "--api-addr", n.APIAddr,
		"--listen-client-urls", "http://"+etcdtest.FreeAddr(t), "--listen-peer-urls", "http://"+etcdtest.FreeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--api-addr: "+n.APIAddr+" is in use") || strings.Contains(string(out), "goroutine") ||
		strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
		t.Fatalf("a taken API port: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, bin, "--data-dir", t.TempDir(), "--api-addr", etcdtest.FreeAddr(t),
		"--listen-client-urls", n.Client, "--listen-peer-urls", "http://"+etcdtest.FreeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--listen-client-urls: "+strings.TrimPrefix(n.Client, "http://")+" is in use") {
		t.Fatalf("a taken client port: %v\n%s", err, out)
	}

	// On a terminal (script(1)): console logs and the banner.
	api := etcdtest.FreeAddr(t)
	line := strings.Join([]string{bin, "--data-dir", t.TempDir(), "--api-addr", api, "--listen-client-urls", "http://" + etcdtest.FreeAddr(t),
		"--listen-peer-urls", "http://" + etcdtest.FreeAddr(t), "--schema", schema}, " ")
	cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	cmd.Env = append(os.Environ(), "CFGADM_CONFIG="+filepath.Join(t.TempDir(), "cfgadm.yaml")) // not the user's own
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The banner's last line: what is read below has been written by then.
	waitFor(t, "the banner", 60*time.Second, func() bool { return strings.Contains(buf.String(), "cfgadm --endpoint http://"+api+" list") })
	s := buf.String()
	if !strings.Contains(s, "API:          http://"+api) || !strings.Contains(s, "cfgadm --endpoint http://"+api+" list") ||
		!strings.Contains(s, "INFO") || strings.Contains(s, `{"level"`) {
		t.Fatalf("cfgnode on a terminal:\n%s", s)
	}
}

func freeAddr(t *testing.T) string { return etcdtest.FreeAddr(t) }

// scripts/cluster.sh checks its ports before it starts anything: a member
// that cannot bind is never reported up because another member answered.
func TestClusterScriptRefusesTakenPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:7380")
	if err != nil {
		t.Fatalf("the test holds 127.0.0.1:7380 itself, which is in use (a cfgnode of yours?): %v", err)
	}
	defer ln.Close()
	root := copyRepo(t)
	cmd := exec.CommandContext(ctxT(t), "scripts/cluster.sh", "up", "-n", "1", "-d", t.TempDir())
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "port 7380 (member m0) is in use") || strings.Contains(string(out), "up:") {
		t.Fatalf("cluster.sh with 7380 taken: %v\n%s", err, out)
	}
}

// scripts/cluster.sh up --tls runs three members with TLS on every hop, and
// cfgadm reaches them through the context m0 wrote (the CA, a certificate).
func TestClusterScriptTLS(t *testing.T) {
	root, dir := copyRepo(t), t.TempDir()
	env := append(os.Environ(), "CFGADM_CONFIG="+filepath.Join(dir, "cfgadm.yaml"))
	run := func(name string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctxT(t), name, args...)
		cmd.Dir, cmd.Env = root, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { run("scripts/cluster.sh", "down", "-d", dir) })
	if out, err := run("scripts/cluster.sh", "up", "--tls", "-d", dir); err != nil || !strings.Contains(out, "with TLS on every hop") {
		t.Fatalf("cluster.sh up --tls: %v\n%s", err, out)
	}
	if out, err := run("bin/cfgadm", "set", "log.level", "warn"); err != nil {
		t.Fatalf("cfgadm over TLS: %v\n%s", err, out)
	}
	if out, err := run("bin/cfgadm", "--context", "m0", "cluster", "status"); err != nil || strings.Count(out, "https://127.0.0.1:") != 3 {
		t.Fatalf("cluster status: %v\n%s", err, out)
	}
	if out, err := etcdctl(t, "http://127.0.0.1:2389", "", "get", "x"); err == nil {
		t.Fatalf("m1's etcd port speaks plain gRPC: %s", out)
	}
	certs := filepath.Join(dir, "certs")
	cred, err := auth.ReadEtcdCredential(filepath.Join(dir, "m2", "etcd.credential"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := etcdctl(t, "https://127.0.0.1:2399", cred.User+":"+cred.Password, "--cacert", filepath.Join(certs, "ca.pem"),
		"--cert", filepath.Join(certs, "m2.pem"), "--key", filepath.Join(certs, "m2-key.pem"), "get", "--print-value-only",
		"/cfgcluster/v1/values/log.level"); err != nil || !strings.Contains(out, "warn") {
		t.Fatalf("etcdctl over TLS: %v\n%s", err, out)
	}
}

// A token made through one node works on every node, and its revocation
// through another is refused by all of them (each follows the auth range).
func TestTokensAcrossTheCluster(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	ctx := ctxT(t)
	out, errOut, code := cl.Nodes[0].Adm(ctx, "token", "create", "ops", "--role", "editor", "--subject", "ops@example")
	if code != 0 {
		t.Fatalf("token create: exit %d\n%s", code, errOut)
	}
	token := strings.TrimSpace(out)
	c2 := api.NewClient(cl.Nodes[2].URL(), token)
	if _, err := c2.Set(ctx, "log.level", api.SetRequest{Text: ptr("warn")}); err != nil {
		t.Fatalf("a token made on n0, used on n2: %v", err)
	}
	// (A read of another node's cache may lag the write: read through etcd.)
	if v, err := api.NewClient(cl.Nodes[1].URL(), token).GetLinearizable(ctx, "log.level"); err != nil || v.Actor != "ops@example" {
		t.Fatalf("read through n1: %+v %v", v, err)
	}
	if _, e, code := cl.Nodes[1].Adm(ctx, "token", "revoke", "ops"); code != 0 {
		t.Fatal(e)
	}
	revoked := time.Now()
	for _, n := range cl.Nodes {
		c := api.NewClient(n.URL(), token)
		waitFor(t, "the revocation on "+n.Name, 10*time.Second, func() bool {
			_, err := c.Get(ctx, "log.level", 0)
			return cfgerr.CodeOf(err) == cfgerr.Unauthenticated
		})
	}
	t.Logf("revoked on every node %v after the revoke answered", time.Since(revoked).Round(time.Millisecond))
	// An editor may not administer.
	if _, errOut, code := cl.Nodes[0].Adm(ctx, "--token-file", writeToken(t, token), "token", "list"); code != 6 {
		t.Fatalf("a revoked token: exit %d %s", code, errOut)
	}
}

func writeToken(t *testing.T, token string) string {
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte(token), 0o600)
	return p
}

// The API over TLS with certificates from cfgnode certs: cfgadm trusts the
// CA through the context the node wrote; plain HTTP and an unknown CA are
// refused with what to do; with --client-cert-auth a client without a
// certificate cannot connect.
func TestTLS(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	dir := t.TempDir()
	if out, err := exec.Command(filepath.Join(Binaries(t), "cfgnode"), "certs", "--dir", dir, "--names", "n1").CombinedOutput(); err != nil {
		t.Fatalf("cfgnode certs: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(dir, "n1-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the key's mode: %v", err)
	}
	n := newNode(t, "n1", "http://"+etcdtest.FreeAddr(t))
	n.CA = filepath.Join(dir, "ca.pem")
	n.ClientCert, n.ClientKey = filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")
	n.Args = append(n.Args, "--listen-peer-urls", n.Peer, "--schema", schema, "--cert-file", filepath.Join(dir, "n1.pem"),
		"--key-file", filepath.Join(dir, "n1-key.pem"), "--trusted-ca-file", n.CA, "--client-cert-auth")
	n.Start()
	ctx := ctxT(t)
	// The context the node wrote: https, its CA, its certificate as the client's.
	if out, errOut, code := n.Adm(ctx, "set", "log.level", "warn"); code != 0 {
		t.Fatalf("cfgadm over TLS: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code := n.Adm(ctx, "--endpoint", "http://"+n.APIAddr, "get", "log.level")
	if code != 5 || !strings.Contains(errOut, "serves HTTPS: use https://"+n.APIAddr) {
		t.Fatalf("plain HTTP to a TLS API: exit %d %s", code, errOut)
	}
	// No CA: the error says what to trust.
	cmd := exec.CommandContext(ctx, filepath.Join(Binaries(t), "cfgadm"), "--endpoint", n.URL(), "get", "log.level")
	cmd.Env = append(os.Environ(), "CFGADM_CONFIG="+filepath.Join(t.TempDir(), "none.yaml"), "CFGADM_TOKEN="+n.Token())
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 || !strings.Contains(string(out), "--ca-file") {
		t.Fatalf("an unknown CA: %v\n%s", err, out)
	}
	// The CA but no client certificate: the handshake fails.
	c := api.NewClient(n.URL(), n.Token())
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(n.CA)
	pool.AppendCertsFromPEM(pem)
	c.HTTP.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	if _, err := c.Get(ctx, "log.level", 0); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if v, err := n.API().Get(ctx, "log.level", 0); err != nil || v.Value != "warn" {
		t.Fatalf("a client with the CA and a certificate: %+v %v", v, err)
	}
}

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/etcdtest"
	"cfgcluster/node"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds cmd/cfgnode, cmd/cfgadm and examples/service once and
// returns their folder.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "cfgcluster-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		cmd := exec.Command("go", "build", "-o", binDir, "./cmd/cfgnode", "./cmd/cfgadm", "./examples/service")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Node is a cfgnode process.
type Node struct {
	t       testing.TB
	Name    string
	DataDir string
	APIAddr string
	Client  string // etcd client URL
	Peer    string // etcd peer URL
	Args    []string
	LogPath string
	Netns   string // the network namespace it runs in ("": the test's)
	CA      string // with a CA (PEM file), the API is HTTPS and clients trust it
	// ClientCert and ClientKey are what the test's clients present, for a
	// node started with --client-cert-auth.
	ClientCert, ClientKey string
	cmd                   *exec.Cmd
	exited                chan struct{}
	exitErr               error
	stopOnce              sync.Once
	accounts              map[string]string // service → its etcd credential file
}

// ServiceAccount returns the credential file of the service account of
// service, made through the node's API the first time.
func (n *Node) ServiceAccount(service string) string {
	n.t.Helper()
	if f, ok := n.accounts[service]; ok {
		return f
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := n.API().CreateServiceAccount(ctx, api.ServiceAccountRequest{Name: service})
	if err != nil {
		n.t.Fatalf("service account %s: %v", service, err)
	}
	f := filepath.Join(n.t.TempDir(), service+".etcd-credential")
	if err := (auth.EtcdCredential{User: sa.EtcdUser, Password: sa.EtcdPassword}).Write(f); err != nil {
		n.t.Fatal(err)
	}
	if n.accounts == nil {
		n.accounts = map[string]string{}
	}
	n.accounts[service] = f
	return f
}

// NodeConfig sets a node's extra flags.
type NodeConfig struct {
	Name  string
	Flags []string // extra flags, e.g. --schema FILE
}

// StartNode starts a single-member cfgnode and waits until it is healthy.
func StartNode(t testing.TB, cfg NodeConfig) *Node {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "n1"
	}
	n := newNode(t, cfg.Name, "http://"+etcdtest.FreeAddr(t))
	n.Args = append(n.Args, "--listen-peer-urls", n.Peer)
	n.Args = append(n.Args, cfg.Flags...)
	n.Start()
	return n
}

// newNode lays out a node's ports, folders and base flags; its process is
// started by Start. The test's cleanup kills it.
func newNode(t testing.TB, name, peer string) *Node {
	dir := t.TempDir()
	n := &Node{t: t, Name: name, DataDir: filepath.Join(dir, "data"), APIAddr: etcdtest.FreeAddr(t),
		Client: "http://" + etcdtest.FreeAddr(t), Peer: peer, LogPath: filepath.Join(dir, "cfgnode.log")}
	n.Args = []string{"--name", n.Name, "--data-dir", n.DataDir, "--api-addr", n.APIAddr,
		"--listen-client-urls", n.Client, "--log-level", "info"}
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			log, _ := os.ReadFile(n.LogPath)
			t.Logf("%s log:\n%s", n.Name, tail(log, 40))
		}
	})
	return n
}

// Start (re)starts the process on the same data and ports and waits until
// /healthz answers.
func (n *Node) Start() {
	n.t.Helper()
	n.Launch()
	n.WaitHealthy()
}

// Launch starts the process without waiting for it (a cluster's members
// wait for each other).
func (n *Node) Launch() {
	n.t.Helper()
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	n.cmd = exec.Command(filepath.Join(Binaries(n.t), "cfgnode"), n.Args...)
	if n.Netns != "" {
		// ip netns exec enters the namespace and execs cfgnode: the same
		// process, so signals (kill, pause) reach it.
		n.cmd = exec.Command("ip", append([]string{"netns", "exec", n.Netns, n.cmd.Path}, n.Args...)...)
	}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	// The node adds a context for itself to cfgadm's config file: the
	// test's own, never the user's.
	n.cmd.Env = append(os.Environ(), "CFGADM_CONFIG="+n.AdmConfig())
	// A test process that is killed (a soak stopped with Ctrl-C) runs no
	// cleanup: the kernel then kills its nodes, which would otherwise run on.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	n.stopOnce = sync.Once{}
	go func(cmd *exec.Cmd, done chan struct{}) {
		n.exitErr = cmd.Wait()
		logf.Close()
		close(done)
	}(n.cmd, n.exited)
}

// URL is the node's API base URL.
func (n *Node) URL() string {
	if n.CA != "" {
		return "https://" + n.APIAddr
	}
	return "http://" + n.APIAddr
}

// transport trusts the node's CA, when it has one.
func (n *Node) transport() http.RoundTripper {
	if n.CA == "" {
		return http.DefaultTransport
	}
	pem, err := os.ReadFile(n.CA)
	if err != nil {
		n.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	if n.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(n.ClientCert, n.ClientKey)
		if err != nil {
			n.t.Fatal(err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	return tr
}

// API returns a Go client of the node's API.
func (n *Node) API() *api.Client {
	c := api.NewClient(n.URL(), n.Token())
	c.HTTP.Transport = n.transport()
	return c
}

// Token is the node's admin token, which it made at its first start.
func (n *Node) Token() string {
	b, _ := os.ReadFile(filepath.Join(n.DataDir, "admin.token"))
	return strings.TrimSpace(string(b))
}

// Join sets the flags of a new node (not started yet) that joins the
// cluster a member add (res) added it to, with the etcd credential made
// for it.
func (n *Node) Join(res *api.MemberAdded) {
	credFile := filepath.Join(n.t.TempDir(), n.Name+".etcd-credential")
	if err := (auth.EtcdCredential{User: res.EtcdUser, Password: res.EtcdPassword}).Write(credFile); err != nil {
		n.t.Fatal(err)
	}
	n.Args = append(n.Args, "--listen-peer-urls", n.Peer, "--initial-advertise-peer-urls", n.Peer,
		"--advertise-client-urls", n.Client, "--initial-cluster", res.InitialCluster, "--initial-cluster-state", "existing",
		"--etcd-credential-file", credFile)
	if len(res.Keyring) > 0 {
		keyring := filepath.Join(n.t.TempDir(), n.Name+".keyring")
		if err := os.WriteFile(keyring, res.Keyring, 0o600); err != nil {
			n.t.Fatal(err)
		}
		n.Args = append(n.Args, "--encryption-keyring", keyring)
	}
}

// MakeCerts makes a development CA and a certificate for each named node
// with cfgnode certs, and returns their folder.
func MakeCerts(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command(filepath.Join(Binaries(t), "cfgnode"), "certs", "--dir", dir, "--names", strings.Join(names, ",")).CombinedOutput(); err != nil {
		t.Fatalf("cfgnode certs: %v\n%s", err, out)
	}
	return dir
}

// UseTLS puts every hop of the node on TLS with its certificate in certs
// (MakeCerts): the API, etcd's client port, and its peers, each requiring a
// client certificate from the same CA. Call it before the node starts.
func (n *Node) UseTLS(certs string) {
	https := func(u string) string { return strings.Replace(u, "http://", "https://", 1) }
	n.Client, n.Peer = https(n.Client), https(n.Peer)
	for i, a := range n.Args {
		n.Args[i] = https(a)
	}
	n.CA = filepath.Join(certs, "ca.pem")
	n.ClientCert, n.ClientKey = filepath.Join(certs, n.Name+".pem"), filepath.Join(certs, n.Name+"-key.pem")
	n.Args = append(n.Args, "--cert-file", n.ClientCert, "--key-file", n.ClientKey, "--trusted-ca-file", n.CA, "--client-cert-auth",
		"--peer-cert-file", n.ClientCert, "--peer-key-file", n.ClientKey, "--peer-trusted-ca-file", n.CA, "--peer-client-cert-auth")
}

// Etcd is a configuration of an etcd client of the node's member, logged
// in as the node's own etcd user (etcd's root role): what only tests that
// look beneath the API use.
func (n *Node) Etcd() clientv3.Config {
	cred, err := auth.ReadEtcdCredential(node.EtcdCredentialFile(n.DataDir))
	if err != nil {
		n.t.Fatalf("%s: %v", n.Name, err)
	}
	cc := cred.Config(clientv3.Config{Endpoints: []string{n.Client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if n.CA != "" {
		if cc.TLS, err = (transport.TLSInfo{TrustedCAFile: n.CA, CertFile: n.ClientCert, KeyFile: n.ClientKey}).ClientConfig(); err != nil {
			n.t.Fatal(err)
		}
	}
	return cc
}

// AdmEnv is the environment of a cfgadm that talks to the node: its config
// file, with the node's context and admin token.
func (n *Node) AdmEnv() []string { return append(os.Environ(), "CFGADM_CONFIG="+n.AdmConfig()) }

// AdmConfig is the cfgadm config file the node adds its context to.
func (n *Node) AdmConfig() string { return filepath.Join(filepath.Dir(n.DataDir), "cfgadm.yaml") }

// WaitHealthy waits up to 60s for /healthz, failing the test if the process exits.
func (n *Node) WaitHealthy() {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			log, _ := os.ReadFile(n.LogPath)
			n.t.Fatalf("%s exited while starting: %v\n%s", n.Name, n.exitErr, tail(log, 30))
		default:
		}
		if resp, err := (&http.Client{Transport: n.transport()}).Get(n.URL() + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("%s not healthy after 60s", n.Name)
}

// Stop sends SIGTERM and waits for the process to exit; it returns the exit error.
func (n *Node) Stop() error {
	n.t.Helper()
	return n.signal(syscall.SIGTERM, 30*time.Second)
}

// Kill sends SIGKILL and waits for the process to exit.
func (n *Node) Kill() {
	n.Resume()
	n.signal(syscall.SIGKILL, 10*time.Second)
}

// Slow makes the process slow, as a starved or throttled member is: it is
// stopped 50 ms of every 200 ms until the returned func is called.
func (n *Node) Slow() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			n.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(50 * time.Millisecond)
			n.cmd.Process.Signal(syscall.SIGCONT)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// StallDisk delays every fsync and fdatasync of the node by delay (strace
// injects it, as a stalling disk would; the process is traced until stop),
// and returns a func that ends the stall and reports how many syncs it
// delayed.
func (n *Node) StallDisk(delay time.Duration) (stop func() int) {
	n.t.Helper()
	trace := filepath.Join(n.t.TempDir(), "strace.log")
	pid := n.cmd.Process.Pid
	cmd := exec.Command("strace", "-f", "-qq", "-o", trace, "-p", strconv.Itoa(pid), "-e", "trace=fsync,fdatasync",
		"-e", fmt.Sprintf("inject=fsync,fdatasync:delay_enter=%dus", delay.Microseconds()))
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("strace (Debian's strace; scripts/test.sh installs it): %v", err)
	}
	// Traced once the kernel names a tracer for the process.
	deadline := time.Now().Add(5 * time.Second)
	for !traced(pid) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			n.t.Fatalf("strace did not attach to %s: %s", n.Name, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() int {
		cmd.Process.Signal(syscall.SIGINT) // detaches: the process runs on, untraced
		cmd.Wait()
		b, _ := os.ReadFile(trace)
		return strings.Count(string(b), "(DELAYED)")
	}
}

// traced reports whether a process has a tracer (/proc/PID/status).
func traced(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return false
}

// Pause stops the process (SIGSTOP): it keeps its sockets and answers nothing.
func (n *Node) Pause() { n.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (n *Node) Resume() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.exited:
	default:
		n.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// WaitExit waits up to d for the process to exit on its own and returns its
// exit error; ok is false if it is still running.
func (n *Node) WaitExit(d time.Duration) (err error, ok bool) {
	select {
	case <-n.exited:
		return n.exitErr, true
	case <-time.After(d):
		return nil, false
	}
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

func (n *Node) signal(sig syscall.Signal, wait time.Duration) error {
	if n.cmd == nil {
		return nil // never started
	}
	select {
	case <-n.exited:
		return n.exitErr
	default:
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
		return n.exitErr
	case <-time.After(wait):
		n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("%s did not exit within %v of %v", n.Name, wait, sig)
	}
}

// Adm runs cfgadm against the node and returns its stdout, stderr and exit code.
func (n *Node) Adm(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	cmd := exec.CommandContext(ctx, filepath.Join(Binaries(n.t), "cfgadm"), append([]string{"--endpoint", n.URL()}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = n.AdmEnv()
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatalf("cfgadm: %v", err)
	}
	return o.String(), e.String(), code
}

func tail(b []byte, lines int) []byte {
	i := len(b)
	for n := 0; n < lines && i > 0; n++ {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			return b
		}
	}
	return b[i+1:]
}

// Service is a running examples/service process: a service that embeds the
// watch client and registers itself.
type Service struct {
	t       testing.TB
	Name    string
	Addr    string
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartService starts examples/service against node's etcd and waits until
// it serves. args are extra flags (--schema, --ttl, --id).
func StartService(t testing.TB, n *Node, service string, args ...string) *Service {
	t.Helper()
	dir := t.TempDir()
	s := &Service{t: t, Name: service, Addr: etcdtest.FreeAddr(t), LogPath: filepath.Join(dir, "service.log"), exited: make(chan struct{})}
	logf, err := os.Create(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(filepath.Join(Binaries(t), "service"), append([]string{"--service", service,
		"--etcd-endpoints", n.Client, "--etcd-credential", n.ServiceAccount(service), "--http-addr", s.Addr}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // as for nodes
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.exited) }()
	t.Cleanup(func() {
		s.Signal(syscall.SIGCONT)
		s.Signal(syscall.SIGKILL)
		<-s.exited
		if t.Failed() {
			log, _ := os.ReadFile(s.LogPath)
			t.Logf("service %s log:\n%s", service, tail(log, 20))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(s.URL() + "/healthz"); err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(s.LogPath)
			t.Fatalf("service exited while starting:\n%s", tail(log, 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("service not serving after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the service's base URL.
func (s *Service) URL() string { return "http://" + s.Addr }

// Signal sends sig to the service process (SIGSTOP pauses it, SIGKILL kills it).
func (s *Service) Signal(sig syscall.Signal) {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Signal(sig)
	}
}

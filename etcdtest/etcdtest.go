package etcdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Member is a running single-member etcd cluster.
type Member struct {
	Etcd     *embed.Etcd
	Endpoint string // client URL, http://127.0.0.1:PORT
	cfg      *embed.Config
}

// Start runs a single-member etcd cluster until the test ends and returns it
// with a client that the test's cleanup closes. Options change the member's
// configuration before it starts.
func Start(t testing.TB, opts ...func(*embed.Config)) (*Member, *clientv3.Client) {
	t.Helper()
	m, err := New(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	c := m.Client(t)
	return m, c
}

// New starts a single-member etcd cluster with its data in dir, on loopback
// ports the kernel picks, outside any test (examples use it); Stop ends it.
func New(dir string, opts ...func(*embed.Config)) (*Member, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Name = "test"
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	var urls [2]url.URL
	for i := range urls {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		urls[i] = url.URL{Scheme: "http", Host: addr}
	}
	peer, client := urls[0], urls[1]
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.MaxTxnOps = 4096
	cfg.MaxRequestBytes = 8 << 20 // as cfgnode's embedded member
	for _, o := range opts {
		o(cfg)
	}
	m := &Member{Endpoint: client.String(), cfg: cfg}
	if err := m.launch(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Member) start(t testing.TB) {
	t.Helper()
	if err := m.launch(); err != nil {
		t.Fatal(err)
	}
}

func (m *Member) launch() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("etcdtest: etcd not ready within 30s")
	}
	m.Etcd = e
	return nil
}

// Stop closes the member (its data stays); Restart brings it back.
func (m *Member) Stop() {
	if m.Etcd != nil {
		m.Etcd.Close()
		m.Etcd = nil
	}
}

// Restart starts a stopped member again on the same ports and data.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	m.Stop()
	m.start(t)
}

// Replace stops the member and starts a new, empty one on the same ports:
// to clients it is the same endpoint serving another cluster (one restored
// from an older snapshot, or replaced), whose revisions start again.
func (m *Member) Replace(t testing.TB) {
	t.Helper()
	m.Stop()
	m.cfg.Dir = t.TempDir()
	m.start(t)
}

// Client returns a new client of the member, closed when the test ends.
func (m *Member) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{m.Endpoint},
		DialTimeout:        5 * time.Second,
		Logger:             zap.NewNop(),
		MaxCallSendMsgSize: 10 << 20,
		MaxCallRecvMsgSize: 64 << 20,
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Compact compacts the member's history up to the current revision.
func Compact(t testing.TB, c *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Get(ctx, "compact-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, r.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

// FreeAddr returns a loopback address (127.0.0.1:PORT) with a port that is
// free now. Ports come at random from below the kernel's ephemeral range
// (32768–60999 here): an outgoing connection of another test, which takes
// an ephemeral port, can then never take the port between this check and
// the listen that follows it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// handedOut are the ports FreeAddr returned: a port handed out is not
// listened on until its user starts, so without this two callers could be
// handed the same one (a chaos test's member and its peer proxy were).
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

func freeAddr() (string, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 1000 {
		port := 10000 + rand.IntN(22000)
		if handedOut.ports[port] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			handedOut.ports[port] = true
			return addr, nil
		}
	}
	return "", fmt.Errorf("etcdtest: no free port below the ephemeral range")
}

// FreeURL is FreeAddr as an http URL.
func FreeURL(t testing.TB) url.URL {
	return url.URL{Scheme: "http", Host: FreeAddr(t)}
}

// Cluster is a multi-member etcd cluster of embedded members.
type Cluster struct {
	Members []*Member
}

// StartCluster runs an n-member cluster until the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	cl := &Cluster{}
	var initial []string
	for i := 0; i < n; i++ {
		cfg := embed.NewConfig()
		cfg.Dir = t.TempDir()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Logger = "zap"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		peer, client := FreeURL(t), FreeURL(t)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.MaxTxnOps = 4096
		initial = append(initial, cfg.Name+"="+peer.String())
		cl.Members = append(cl.Members, &Member{Endpoint: client.String(), cfg: cfg})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, m := range cl.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		wg.Add(1)
		go func(i int, m *Member) {
			defer wg.Done()
			e, err := embed.StartEtcd(m.cfg)
			if err != nil {
				errs[i] = err
				return
			}
			select {
			case <-e.Server.ReadyNotify():
			case <-time.After(60 * time.Second):
				errs[i] = fmt.Errorf("member %s not ready within 60s", m.cfg.Name)
			}
			m.Etcd = e
		}(i, m)
	}
	wg.Wait()
	for _, m := range cl.Members {
		t.Cleanup(m.Stop)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	return cl
}

// Endpoints are the client URLs of every member.
func (cl *Cluster) Endpoints() []string {
	var out []string
	for _, m := range cl.Members {
		out = append(out, m.Endpoint)
	}
	return out
}

// Client returns a client of every member, closed when the test ends.
func (cl *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Scratch starts a throwaway single-member cluster in a temporary folder
// (for examples, outside any test) and returns a client of it and a stop
// function that closes both and removes the folder.
func Scratch() (*clientv3.Client, func(), error) {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		return nil, nil, err
	}
	m, err := New(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		m.Stop()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return c, func() { c.Close(); m.Stop(); os.RemoveAll(dir) }, nil
}

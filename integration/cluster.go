package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/api"
	"cfgcluster/etcdtest"
	"cfgcluster/seal"
)

// Config describes a cluster of cfgnode processes.
type Config struct {
	Size   int      // members: 1, 3 or 5
	Schema string   // schema file applied at first start
	Flags  []string // extra flags for every node
	// NodeFlags gives node i extra flags of its own (nil: none).
	NodeFlags func(i int) []string
	// Netns puts each member in a network namespace of its own (see
	// netns): partitions then cut real traffic, in both directions or one.
	Netns bool
	// TLS runs every hop over TLS with certificates from cfgnode certs: the
	// API, etcd's client port (with client certificates) and its peers.
	TLS bool
}

// Cluster is a multi-member cluster of real cfgnode processes on loopback.
// Peer traffic to each member goes through its own fault proxy, so a
// member can be cut off from its peers (Partition) and healed.
type Cluster struct {
	t       testing.TB
	Nodes   []*Node
	proxies []*etcdtest.Proxy // loopback mode
	ns      *netns            // Netns mode
}

// NewCluster starts a cluster and waits until every node is healthy and a
// leader is elected. The test's cleanup stops everything.
func NewCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cl := &Cluster{t: t}
	var initial []string
	if cfg.Netns {
		cl.ns = newNetns(t, cfg.Size)
	}
	for i := 0; i < cfg.Size; i++ {
		if cl.ns != nil {
			n := newNode(t, fmt.Sprintf("n%d", i), "http://"+cl.ns.addr(i)+":2380")
			n.Netns, n.APIAddr, n.Client = cl.ns.names[i], cl.ns.addr(i)+":7380", "http://"+cl.ns.addr(i)+":2379"
			n.Args = []string{"--name", n.Name, "--data-dir", n.DataDir, "--api-addr", n.APIAddr, "--log-level", "info",
				"--listen-client-urls", n.Client, "--advertise-client-urls", n.Client,
				"--listen-peer-urls", n.Peer, "--initial-advertise-peer-urls", n.Peer}
			cl.Nodes = append(cl.Nodes, n)
			initial = append(initial, n.Name+"="+n.Peer)
			continue
		}
		listen := etcdtest.FreeAddr(t)
		p := etcdtest.NewProxy(t, listen)
		n := newNode(t, fmt.Sprintf("n%d", i), "http://"+p.Addr)
		n.Args = append(n.Args, "--listen-peer-urls", "http://"+listen, "--initial-advertise-peer-urls", n.Peer,
			"--advertise-client-urls", n.Client)
		cl.Nodes = append(cl.Nodes, n)
		cl.proxies = append(cl.proxies, p)
		initial = append(initial, n.Name+"="+n.Peer)
	}
	if cfg.TLS {
		var names []string
		for _, n := range cl.Nodes {
			names = append(names, n.Name)
		}
		certs := MakeCerts(t, names...)
		for i, n := range cl.Nodes {
			n.UseTLS(certs)
			initial[i] = strings.Replace(initial[i], "=http://", "=https://", 1)
		}
	}
	// One encryption keyring for every node, as an operator gives them.
	keyring := filepath.Join(t.TempDir(), "cluster.keyring")
	ring := seal.NewKEKRing()
	if err := seal.WriteKeyring(keyring, ring); err != nil {
		t.Fatal(err)
	}
	for i, n := range cl.Nodes {
		n.Args = append(n.Args, "--initial-cluster", strings.Join(initial, ","), "--encryption-keyring", keyring)
		if cfg.NodeFlags != nil {
			n.Args = append(n.Args, cfg.NodeFlags(i)...)
		}
		if cfg.Schema != "" {
			n.Args = append(n.Args, "--schema", cfg.Schema)
		}
		n.Args = append(n.Args, cfg.Flags...)
		n.Launch()
	}
	for _, n := range cl.Nodes {
		n.WaitHealthy()
	}
	cl.WaitLeader()
	return cl
}

// Partition cuts member i off from its peers: on loopback, nothing they
// send reaches it (a blackhole in its peer proxy, connections left open);
// with Netns, nothing crosses either way.
func (cl *Cluster) Partition(i int) {
	if cl.ns != nil {
		cl.ns.isolate(i)
		return
	}
	cl.proxies[i].Blackhole()
}

// Fault makes one of the faults only network namespaces can make (Netns):
// "cannot-send" (member i's packets to its peers are dropped), "cannot-receive"
// (theirs to it are), "clients-cut" (its replies to every client are).
func (cl *Cluster) Fault(i int, kind string) {
	cl.t.Helper()
	if cl.ns == nil {
		cl.t.Fatalf("fault %s needs a cluster with Netns", kind)
	}
	switch kind {
	case "cannot-send":
		cl.ns.cannotSend(i)
	case "cannot-receive":
		cl.ns.cannotReceive(i)
	case "clients-cut":
		cl.ns.cutClients(i)
	default:
		cl.t.Fatalf("no fault %q", kind)
	}
}

// Heal ends member i's partition (with Netns, every fault).
func (cl *Cluster) Heal(i int) {
	if cl.ns != nil {
		cl.ns.heal()
		return
	}
	cl.proxies[i].Restore()
}

// WaitLeader waits up to 30 s until the live members agree on a leader,
// and returns its index.
func (cl *Cluster) WaitLeader() int {
	cl.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if i := cl.leader(); i >= 0 {
			return i
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl.t.Fatal("no leader within 30s")
	return -1
}

func (cl *Cluster) leader() int {
	for _, n := range cl.Nodes {
		if !n.Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := n.API().Cluster(ctx)
		cancel()
		if err != nil {
			continue
		}
		for _, m := range st.Members {
			if m.Leader {
				for i, x := range cl.Nodes {
					if x.Name == m.Name {
						return i
					}
				}
			}
		}
	}
	return -1
}

// Compact compacts etcd's history up to its current revision, through any
// member that answers.
func (cl *Cluster) Compact() error {
	var err error
	for i := range cl.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var c *clientv3.Client
		cc := cl.Nodes[i].Etcd()
		cc.DialTimeout = 2 * time.Second
		if c, err = clientv3.New(cc); err == nil {
			var r *clientv3.GetResponse
			if r, err = c.Get(ctx, "compact-probe"); err == nil {
				_, err = c.Compact(ctx, r.Header.Revision)
				if errors.Is(err, rpctypes.ErrCompacted) {
					err = nil // a member behind the last compaction: it is done already
				}
			}
			c.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

// API returns a client of node i's API.
func (cl *Cluster) API(i int) *api.Client { return cl.Nodes[i].API() }

// Endpoints are the etcd client URLs of every member.
// Etcd is a configuration of an etcd client of every member (Node.Etcd).
func (cl *Cluster) Etcd() clientv3.Config {
	cc := cl.Nodes[0].Etcd()
	cc.Endpoints = cl.Endpoints()
	return cc
}

func (cl *Cluster) Endpoints() []string {
	var out []string
	for _, n := range cl.Nodes {
		out = append(out, n.Client)
	}
	return out
}

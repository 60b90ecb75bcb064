package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/etcdtest"
)

// Config describes a cluster of cfgnode processes.
type Config struct {
	Size   int      // members: 1, 3 or 5
	Schema string   // schema file applied at first start
	Flags  []string // extra flags for every node
}

// Cluster is a multi-member cluster of real cfgnode processes on loopback.
// Peer traffic to each member goes through its own fault proxy, so a
// member can be cut off from its peers (Partition) and healed.
type Cluster struct {
	t       testing.TB
	Nodes   []*Node
	proxies []*etcdtest.Proxy
}

// NewCluster starts a cluster and waits until every node is healthy and a
// leader is elected. The test's cleanup stops everything.
func NewCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cl := &Cluster{t: t}
	var initial []string
	for i := 0; i < cfg.Size; i++ {
		listen := etcdtest.FreeAddr(t)
		p := etcdtest.NewProxy(t, listen)
		n := newNode(t, fmt.Sprintf("n%d", i), "http://"+p.Addr)
		n.Args = append(n.Args, "--listen-peer-urls", "http://"+listen, "--initial-advertise-peer-urls", n.Peer,
			"--advertise-client-urls", n.Client)
		cl.Nodes = append(cl.Nodes, n)
		cl.proxies = append(cl.proxies, p)
		initial = append(initial, n.Name+"="+n.Peer)
	}
	for _, n := range cl.Nodes {
		n.Args = append(n.Args, "--initial-cluster", strings.Join(initial, ","))
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

// Partition cuts member i off from its peers: nothing they send reaches it
// (a blackhole in its peer proxy, connections left open).
func (cl *Cluster) Partition(i int) { cl.proxies[i].Blackhole() }

// Heal ends member i's partition.
func (cl *Cluster) Heal(i int) { cl.proxies[i].Restore() }

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

// API returns a client of node i's API.
func (cl *Cluster) API(i int) *api.Client { return cl.Nodes[i].API() }

// Endpoints are the etcd client URLs of every member.
func (cl *Cluster) Endpoints() []string {
	var out []string
	for _, n := range cl.Nodes {
		out = append(out, n.Client)
	}
	return out
}

// Ack is an acknowledged write.
type Ack struct {
	Key, Value string
	Revision   int64
	At         time.Time
}

// Writers runs n writers, each with one request in flight, writing unique
// values to key through any live node until ctx is done. A request that
// fails is retried on the next node: it was not acknowledged.
type Writers struct {
	mu     sync.Mutex
	acks   []Ack
	errs   int
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// StartWriters starts n writers on key.
func (cl *Cluster) StartWriters(n int, key string) *Writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writers{cancel: cancel}
	for id := 0; id < n; id++ {
		w.wg.Add(1)
		go func(id int) {
			defer w.wg.Done()
			for seq, node := 0, id; ctx.Err() == nil; seq++ {
				v := fmt.Sprintf("w%d-%d", id, seq)
				c := cl.Nodes[node%len(cl.Nodes)].API()
				c.HTTP.Timeout = 3 * time.Second
				res, err := c.Set(ctx, key, api.SetRequest{Text: &v})
				if err != nil {
					w.mu.Lock()
					w.errs++
					w.mu.Unlock()
					node++ // try the next node
					time.Sleep(20 * time.Millisecond)
					continue
				}
				w.mu.Lock()
				w.acks = append(w.acks, Ack{Key: key, Value: v, Revision: res.Revision, At: time.Now()})
				w.mu.Unlock()
			}
		}(id)
	}
	return w
}

// Stop stops the writers and returns what was acknowledged and how many requests failed.
func (w *Writers) Stop() ([]Ack, int) {
	w.cancel()
	w.wg.Wait()
	return w.Acks(), w.errs
}

// Acks returns the writes acknowledged so far.
func (w *Writers) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Ack(nil), w.acks...)
}

// CheckAcks fails the test unless every acknowledged write is in the
// cluster's history at the revision it was acknowledged with.
func (cl *Cluster) CheckAcks(t *testing.T, node int, acks []Ack) {
	t.Helper()
	c := cl.API(node)
	for _, a := range acks {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := c.Get(ctx, a.Key, a.Revision)
		cancel()
		if err != nil || v.Value != a.Value || v.Revision != a.Revision {
			t.Fatalf("acknowledged write %s=%s at revision %d is lost: got %+v, %v", a.Key, a.Value, a.Revision, v, err)
		}
	}
}

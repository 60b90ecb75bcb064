package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// The leader is killed (SIGKILL) under a write load of four writers: writes
// succeed again within 5 s, and after it restarts every acknowledged write
// is in the history at its revision. Fault: process kill, no proxy. Run
// on plain connections, and with TLS on every hop (the API, etcd's clients
// and its peers, each with client certificates).
func TestLeaderKillUnderLoad(t *testing.T) {
	t.Run("plain", func(t *testing.T) { leaderKillUnderLoad(t, false) })
	t.Run("tls", func(t *testing.T) { leaderKillUnderLoad(t, true) })
}

func leaderKillUnderLoad(t *testing.T, tls bool) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema, TLS: tls})
	obs := cl.Observe(t)
	w := cl.StartLoad(4, 2, "site.banner")
	time.Sleep(time.Second)
	leader := cl.WaitLeader()
	killed := time.Now()
	cl.Nodes[leader].Kill()
	// Recovery: the first write sent after the kill that is acknowledged.
	var recovered time.Duration
	for recovered == 0 {
		for _, a := range w.Acks() {
			if a.Called.After(killed) && (recovered == 0 || a.At.Sub(killed) < recovered) {
				recovered = a.At.Sub(killed)
			}
		}
		if recovered == 0 && time.Since(killed) > 5*time.Second {
			t.Fatalf("no write succeeded within 5s of killing the leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("writes succeeded again %v after the leader was killed", recovered)
	time.Sleep(time.Second)
	cl.Nodes[leader].Start()
	time.Sleep(500 * time.Millisecond)
	acks, errs := w.Stop()
	t.Logf("%d writes acknowledged, %d requests failed", len(acks), errs)
	if len(acks) < 20 {
		t.Fatalf("only %d writes acknowledged", len(acks))
	}
	cl.CheckAcks(t, leader, acks) // read through the restarted node: it caught up
	w.CheckLinearizable(t)
	obs.Check(t, cl)
}

// The whole cluster is killed and restarted: every acknowledged write is intact.
func TestWholeClusterRestart(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	w := cl.StartLoad(3, 1, "site.banner")
	time.Sleep(1500 * time.Millisecond)
	for _, n := range cl.Nodes {
		n.Kill()
	}
	acks, _ := w.Stop()
	for _, n := range cl.Nodes {
		n.Launch()
	}
	for _, n := range cl.Nodes {
		n.WaitHealthy()
	}
	cl.WaitLeader()
	if len(acks) < 10 {
		t.Fatalf("only %d writes acknowledged", len(acks))
	}
	cl.CheckAcks(t, 0, acks)
	w.CheckLinearizable(t)
}

// A member cut off from its peers (blackholed peer proxy) leaves a working
// majority; writes go on and, healed, it catches up. Fault: peer proxy.
func TestMinorityPartition(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	leader := cl.WaitLeader()
	victim := (leader + 1) % 3
	obs := cl.Observe(t)
	w := cl.StartLoad(2, 2, "site.banner")
	time.Sleep(500 * time.Millisecond)
	cl.Partition(victim)
	time.Sleep(3 * time.Second)
	acks, _ := w.Stop()
	if len(acks) < 10 {
		t.Fatalf("the majority acknowledged only %d writes", len(acks))
	}
	// Healed, every cache (each node's and a service's) equals a read of
	// etcd within a second. (Linearizable reads through the majority can
	// stall while the victim, deaf but not mute, is cut off: read after.)
	ctx := ctxT(t)
	healed := time.Now()
	cl.Heal(victim)
	var lag string
	converged := func() bool {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		final, err := cl.API(leader).GetLinearizable(rctx, "site.banner")
		cancel()
		if err != nil {
			lag = "the linearizable read: " + err.Error()
			return false
		}
		for i := range cl.Nodes {
			v, err := cl.API(i).Get(ctx, "site.banner", 0)
			if err != nil || v.Value != final.Value {
				lag = fmt.Sprintf("node %d (victim %d): %v %v", i, victim, v, err)
				return false
			}
		}
		lag = "the service's client"
		return obs.C.String("site.banner", "") == final.Value
	}
	for !converged() {
		if time.Since(healed) > time.Second {
			t.Fatalf("caches still differ from etcd 1s after the heal: %s", lag)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("every cache equal to etcd %v after the heal", time.Since(healed))
	cl.CheckAcks(t, victim, acks)
	w.CheckLinearizable(t)
	obs.Check(t, cl)
}

// A follower killed and restarted, then the leader paused for 5 s, under
// load: writes go on, nothing acknowledged is lost, the history is
// linearizable and a watching client misses nothing. Faults: SIGKILL, SIGSTOP.
func TestFollowerRestartAndLeaderPause(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	obs := cl.Observe(t)
	w := cl.StartLoad(3, 2, "site.banner")
	leader := cl.WaitLeader()
	follower := (leader + 1) % 3
	cl.Nodes[follower].Kill()
	time.Sleep(time.Second)
	cl.Nodes[follower].Start()
	cl.WaitLeader()
	cl.WaitCaughtUp(t, follower)
	paused := time.Now()
	cl.Nodes[leader].Pause()
	time.Sleep(5 * time.Second)
	cl.Nodes[leader].Resume()
	resumed := time.Now()
	time.Sleep(2 * time.Second)
	acks, errs := w.Stop()
	var during, after int
	for _, a := range acks {
		switch {
		case a.Called.After(paused) && a.At.Before(resumed):
			during++ // sent and acknowledged while the old leader was paused
		case a.Called.After(resumed):
			after++
		}
	}
	t.Logf("%d writes acknowledged (%d while the leader was paused, %d after), %d requests failed", len(acks), during, after, errs)
	// The majority elects a new leader and goes on within the 5 s pause.
	if during == 0 {
		t.Fatal("no write succeeded while the old leader was paused")
	}
	if after == 0 {
		t.Fatal("no write succeeded after the pause")
	}
	cl.CheckAcks(t, follower, acks)
	w.CheckLinearizable(t)
	obs.Check(t, cl)
}

// Every member restarted in turn (SIGTERM, then start) under load.
func TestRollingRestart(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	obs := cl.Observe(t)
	w := cl.StartLoad(3, 1, "site.banner")
	for _, n := range cl.Nodes {
		if err := n.Stop(); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		n.Start()
		cl.WaitLeader()
	}
	acks, _ := w.Stop()
	cl.CheckAcks(t, 0, acks)
	w.CheckLinearizable(t)
	obs.Check(t, cl)
}

// WaitCaughtUp waits until member i's raft index has reached the leader's
// as it was when called: it has caught up after a restart.
func (cl *Cluster) WaitCaughtUp(t *testing.T, i int) {
	t.Helper()
	ctx := ctxT(t)
	index := func(want int) uint64 {
		st, err := cl.API(i).Cluster(ctx)
		if err != nil {
			return 0
		}
		for _, m := range st.Members {
			if want < 0 && m.Leader || want >= 0 && m.Name == cl.Nodes[want].Name {
				return m.RaftIndex
			}
		}
		return 0
	}
	target := index(-1)
	waitFor(t, fmt.Sprintf("%s to catch up to index %d", cl.Nodes[i].Name, target), 30*time.Second, func() bool {
		return target > 0 && index(i) >= target
	})
}

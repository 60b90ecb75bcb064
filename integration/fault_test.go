package integration

import (
	"path/filepath"
	"testing"
	"time"
)

// The leader is killed (SIGKILL) under a write load of four writers: writes
// succeed again within 5 s, and after it restarts every acknowledged write
// is in the history at its revision. Fault: process kill, no proxy.
func TestLeaderKillUnderLoad(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	w := cl.StartWriters(4, "site.banner")
	time.Sleep(time.Second)
	leader := cl.WaitLeader()
	before := len(w.Acks())
	killed := time.Now()
	cl.Nodes[leader].Kill()
	var recovered time.Duration
	for recovered == 0 {
		for _, a := range w.Acks()[before:] {
			if a.At.After(killed) {
				recovered = a.At.Sub(killed)
				break
			}
		}
		if time.Since(killed) > 5*time.Second {
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
}

// The whole cluster is killed and restarted: every acknowledged write is intact.
func TestWholeClusterRestart(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	w := cl.StartWriters(3, "site.banner")
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
}

// A member cut off from its peers (blackholed peer proxy) leaves a working
// majority; writes go on and, healed, it catches up. Fault: peer proxy.
func TestMinorityPartition(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	leader := cl.WaitLeader()
	victim := (leader + 1) % 3
	w := cl.StartWriters(2, "site.banner")
	time.Sleep(500 * time.Millisecond)
	cl.Partition(victim)
	time.Sleep(3 * time.Second)
	during := len(w.Acks())
	cl.Heal(victim)
	time.Sleep(2 * time.Second)
	acks, _ := w.Stop()
	if during < 10 {
		t.Fatalf("the majority acknowledged only %d writes", during)
	}
	cl.CheckAcks(t, victim, acks)
}

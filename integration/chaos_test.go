package integration

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var (
	chaosRounds = flag.Int("chaos.rounds", 1, "rounds of random faults (scripts/chaos.sh runs more)")
	chaosKeep   = flag.String("chaos.keep", "", "folder where failed rounds keep their history and data")
	chaosSeed   = flag.Uint64("chaos.seed", 0, "random seed (0: from the clock)")
)

// TestChaos runs rounds of random faults under load on a 3-member cluster
// (one round in the suite; scripts/chaos.sh runs a soak). Each round: a
// random fault (leader or follower SIGKILL, leader SIGSTOP, leader or
// follower cut off by its peer proxy) held 1–3 s, then healed; then every
// acknowledged write must be present, the history linearizable, and the
// watching client complete. It prints a summary.
func TestChaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	obs := cl.Observe(t)
	faults := []string{"leader-kill", "follower-kill", "leader-pause", "leader-partition", "follower-partition"}
	type tally struct{ rounds, ops, acked, lost int }
	var (
		total      tally
		perFault   = map[string]*tally{}
		violations int
		failed     []int
		worst      time.Duration
		recoveries []time.Duration
	)
	for round := 1; round <= *chaosRounds; round++ {
		fault := faults[rng.IntN(len(faults))]
		hold := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		load := cl.StartLoad(3, 2, "site.banner")
		time.Sleep(500 * time.Millisecond)
		leader := cl.WaitLeader()
		victim := leader
		if fault == "follower-kill" || fault == "follower-partition" {
			victim = (leader + 1 + rng.IntN(2)) % 3
		}
		at := time.Now()
		switch fault {
		case "leader-kill", "follower-kill":
			cl.Nodes[victim].Kill()
		case "leader-pause":
			cl.Nodes[victim].Pause()
		default:
			cl.Partition(victim)
		}
		recovery := time.Duration(-1)
		for time.Since(at) < hold || recovery < 0 && time.Since(at) < 10*time.Second {
			for _, a := range load.Acks() {
				if a.Called.After(at) && (recovery < 0 || a.At.Sub(at) < recovery) {
					recovery = a.At.Sub(at)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		switch fault {
		case "leader-kill", "follower-kill":
			cl.Nodes[victim].Start()
		case "leader-pause":
			cl.Nodes[victim].Resume()
		default:
			cl.Heal(victim)
		}
		cl.WaitLeader()
		time.Sleep(500 * time.Millisecond)
		acks, _ := load.Stop()
		lost := cl.LostAcks(victim, acks) // read through the member that suffered
		ops, linErr := load.Linearizable()
		_, watchErr := obs.Verify()
		pf := perFault[fault]
		if pf == nil {
			pf = &tally{}
			perFault[fault] = pf
		}
		for _, x := range []*tally{&total, pf} {
			x.rounds++
			x.ops += ops
			x.acked += len(acks)
			x.lost += len(lost)
		}
		if recovery > worst {
			worst = recovery
		}
		if recovery >= 0 {
			recoveries = append(recoveries, recovery)
		}
		if watchErr != nil {
			violations++
		}
		t.Logf("round %d: %s on %s for %v: %d ops, %d acknowledged, %d lost, recovery %v, linearizable: %v, watch: %v",
			round, fault, cl.Nodes[victim].Name, hold.Round(time.Millisecond), ops, len(acks), len(lost), recovery, linErr == nil, watchErr)
		if len(lost) > 0 || linErr != nil || watchErr != nil || recovery < 0 {
			failed = append(failed, round)
			keepRound(t, cl, load, round, fmt.Sprint(linErr, watchErr))
		}
	}
	summary := fmt.Sprintf("chaos: seed %d, %d rounds, %d ops, %d acknowledged, %d lost, %d watch violations, worst recovery %v, failed rounds %v",
		seed, total.rounds, total.ops, total.acked, total.lost, violations, worst, failed)
	for f, x := range perFault {
		summary += fmt.Sprintf("\n  %-18s rounds %d, ops %d, acknowledged %d, lost %d", f, x.rounds, x.ops, x.acked, x.lost)
	}
	summary += fmt.Sprintf("\n  recoveries: %v", recoveries)
	fmt.Println(summary)
	t.Log(summary)
	if len(failed) > 0 {
		t.Fatalf("failed rounds: %v", failed)
	}
}

// keepRound saves a failed round's history and every member's data.
func keepRound(t *testing.T, cl *Cluster, load *Load, round int, why string) {
	if *chaosKeep == "" {
		return
	}
	dir := filepath.Join(*chaosKeep, fmt.Sprintf("round-%d", round))
	os.MkdirAll(dir, 0o755)
	ops := load.History()
	type op struct {
		Client       int
		Write        bool
		Value        string
		Output       any
		Call, Return int64
	}
	var out []op
	for _, o := range ops {
		in := o.Input.(regInput)
		out = append(out, op{o.ClientId, in.write, in.value, o.Output, o.Call, o.Return})
	}
	b, _ := json.MarshalIndent(map[string]any{"why": why, "initial": load.init, "operations": out}, "", " ")
	os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644)
	for _, n := range cl.Nodes {
		exec.Command("cp", "-r", n.DataDir, filepath.Join(dir, n.Name+"-data")).Run()
		exec.Command("cp", n.LogPath, filepath.Join(dir, n.Name+".log")).Run()
	}
	t.Logf("round %d kept in %s", round, dir)
}

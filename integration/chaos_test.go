package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	chaosRounds = flag.Int("chaos.rounds", 1, "rounds of random faults (scripts/chaos.sh runs more)")
	chaosKeep   = flag.String("chaos.keep", "", "folder where failed rounds keep their history and data")
	chaosSeed   = flag.Uint64("chaos.seed", 0, "random seed (0: from the clock)")
	chaosNetns  = flag.Bool("chaos.netns", false, "members in network namespaces, and the faults only they allow (needs root)")
	chaosFor    = flag.Duration("chaos.for", 0, "start no round after this long, and end with the summary of those run (0: every round)")
)

// recoveryBudget is how soon after a single-member fault writes through a
// healthy node must be acknowledged again.
const recoveryBudget = 2 * time.Second

// TestChaos runs rounds of random faults under load on a 3-member cluster
// (one round in the suite; scripts/chaos.sh runs a soak). Each round: a
// random fault (leader or follower SIGKILL, leader SIGSTOP, leader or
// follower cut off by its peer proxy, a follower slowed; with -chaos.netns
// also symmetric and one-way partitions and a leader cut from its clients)
// held 1–3 s, then healed; then every
// acknowledged write must be present, the history linearizable, the
// watching client complete, and writes must have resumed within
// recoveryBudget. etcd is compacted midway through the fault, under load,
// and again after the round: each round reads only what it wrote, so round
// 1,000 costs what round 1 does. It prints a summary by
// fault.
func TestChaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	faults := append(slices.Clone(loopbackFaults), diskFaults...)
	if *chaosNetns {
		// Partitions there are the symmetric isolate faults.
		faults = append(append([]string{"leader-kill", "follower-kill", "leader-pause"}, netnsFaults...), diskFaults...)
	}
	cl := chaosCluster(t, *chaosNetns)
	runChaos(t, cl, seed, faults, *chaosRounds, func(int) string { return faults[rng.IntN(len(faults))] }, rng)
}

// TestNetworkFaults makes each fault that needs network namespaces once,
// under load, with every check of a chaos round: a member cut off from its
// peers both ways, one that cannot send to them, one that cannot hear them,
// a leader cut from its clients, and a slow follower.
func TestNetworkFaults(t *testing.T) {
	if err := hasNetns(); err != nil {
		t.Fatal(err) // CI runs as root; a developer without root runs the rest with -run
	}
	seed := uint64(time.Now().UnixNano())
	cl := chaosCluster(t, true)
	runChaos(t, cl, seed, netnsFaults, len(netnsFaults), func(round int) string { return netnsFaults[round-1] }, rand.New(rand.NewPCG(seed, seed)))
}

// TestDiskStalls stalls the disk of the leader, then of a follower (every
// fsync delayed), each once under load, with every check of a chaos round.
func TestDiskStalls(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	cl := chaosCluster(t, false)
	runChaos(t, cl, seed, diskFaults, len(diskFaults), func(round int) string { return diskFaults[round-1] }, rand.New(rand.NewPCG(seed, seed)))
}

var (
	// loopbackFaults work on any cluster; partitions there cut a member's
	// inbound peer traffic through its proxy.
	loopbackFaults = []string{"leader-kill", "follower-kill", "leader-pause", "leader-partition", "follower-partition", "follower-slow"}
	// netnsFaults need a cluster in network namespaces: partitions there are
	// symmetric, and the one-way faults and the client cut become possible.
	netnsFaults = []string{"leader-isolate", "follower-isolate", "leader-cannot-send", "leader-cannot-receive", "leader-clients-cut", "follower-slow"}
	// diskFaults delay every fsync of one member by diskStall (strace
	// injects it): a disk that stalls, under the leader or a follower.
	diskFaults = []string{"leader-disk-stall", "follower-disk-stall"}
)

// diskStall is how long each fsync of a member with a stalling disk takes.
const diskStall = 300 * time.Millisecond

func chaosCluster(t *testing.T, netns bool) *Cluster {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	// The audit trail's live keys are what a restarting member indexes: a
	// retention, as in production, keeps every round's cost flat.
	return NewCluster(t, Config{Size: 3, Schema: schema, Netns: netns,
		Flags: []string{"--audit-max-records", "20000", "--audit-prune-interval", "5s"}})
}

// runChaos runs rounds of faults (pick names each round's) and fails the
// test if any round failed, after printing the summary by fault.
func runChaos(t *testing.T, cl *Cluster, seed uint64, faults []string, rounds int, pick func(round int) string, rng *rand.Rand) {
	obs := cl.Observe(t)
	total, perFault := &tally{}, map[string]*tally{}
	var failed []int
	began, code := time.Now(), commit() // the code under test: HEAD may move during a long soak
	t.Logf("chaos: seed %d, commit %s", seed, code)
	for round := 1; round <= rounds; round++ {
		if *chaosFor > 0 && time.Since(began) > *chaosFor {
			t.Logf("-chaos.for %v is up: %d of %d rounds run", *chaosFor, round-1, rounds)
			break
		}
		fault := pick(round)
		hold := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		started := time.Now()
		load := cl.StartLoad(3, 2, "site.banner")
		waitFor(t, "the load to get going", 10*time.Second, func() bool { return len(load.Acks()) > 0 })
		leader := cl.WaitLeader()
		victim := leader
		if strings.HasPrefix(fault, "follower-") {
			victim = (leader + 1 + rng.IntN(2)) % 3
		}
		stopSlow := func() {}
		stopStall := func() int { return 0 }
		switch fault {
		case "leader-kill", "follower-kill":
			cl.Nodes[victim].Kill()
		case "leader-pause":
			cl.Nodes[victim].Pause()
		case "follower-slow":
			stopSlow = cl.Nodes[victim].Slow()
		case "leader-disk-stall", "follower-disk-stall":
			stopStall = cl.Nodes[victim].StallDisk(diskStall)
		case "leader-partition", "follower-partition", "leader-isolate", "follower-isolate":
			cl.Partition(victim)
		default:
			cl.Fault(victim, strings.TrimPrefix(fault, "leader-"))
		}
		// The fault is in place now (installing routes takes milliseconds):
		// a write called before this may still commit, and is no recovery.
		at := time.Now()
		recovery := time.Duration(-1)
		compacted := make(chan error, 1)
		midway := time.AfterFunc(hold/2, func() { compacted <- cl.Compact() }) // compaction during the load and the fault
		for time.Since(at) < hold || recovery < 0 && time.Since(at) < 10*time.Second {
			for _, a := range load.Acks() {
				if a.Called.After(at) && (recovery < 0 || a.At.Sub(at) < recovery) {
					recovery = a.At.Sub(at)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The fault must have bitten: a leader cut from its peers (either
		// way) has been replaced, one cut from its clients answers none.
		var noEffect string
		switch fault {
		case "leader-isolate", "leader-cannot-send", "leader-cannot-receive":
			if l := cl.leader(); l == victim {
				noEffect = fmt.Sprintf("%s still leads after %v", cl.Nodes[victim].Name, hold.Round(time.Millisecond))
			}
		case "leader-clients-cut":
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			if _, err := cl.API(victim).Get(ctx, "site.banner", 0); err == nil {
				noEffect = cl.Nodes[victim].Name + " still answers its clients"
			}
			cancel()
		}
		switch fault {
		case "leader-kill", "follower-kill":
			cl.Nodes[victim].Start()
		case "leader-pause":
			cl.Nodes[victim].Resume()
		case "follower-slow":
			stopSlow()
		case "leader-disk-stall", "follower-disk-stall":
			if n := stopStall(); n == 0 {
				noEffect = cl.Nodes[victim].Name + " made no fsync while its disk stalled"
			}
		default:
			cl.Heal(victim)
		}
		cl.WaitLeader()
		cl.WaitCaughtUp(t, victim)
		healed := time.Now()
		acks, _ := load.Stop()
		lost := cl.LostAcks(victim, acks) // read through the member that suffered
		checked := time.Now()
		ops, linErr := load.Linearizable()
		lin := time.Since(checked)
		batches, watchErr := obs.Verify()
		phases := fmt.Sprintf("fault+heal %v, acks %v, linearizability %v, watch %v",
			healed.Sub(at).Round(time.Millisecond), checked.Sub(healed).Round(time.Millisecond),
			lin.Round(time.Millisecond), (time.Since(checked) - lin).Round(time.Millisecond))
		// Compact behind the round too: etcd's history stays bounded, as
		// auto-compaction keeps it in production. The compaction during the
		// fault may fail (no quorum yet): that is no finding.
		if !midway.Stop() {
			<-compacted
		}
		compactErr := cl.Compact()

		// A stalling disk under the leader stalls writes while it lasts
		// (etcd does not move leadership off a slow disk): they must
		// resume within the budget after it ends.
		budget := recoveryBudget
		if strings.HasSuffix(fault, "-disk-stall") {
			budget += hold
		}
		var why []string
		if noEffect != "" {
			why = append(why, "fault: no effect: "+noEffect)
		}
		if len(lost) > 0 {
			why = append(why, fmt.Sprintf("lost: %d acknowledged writes, the first %s at %d", len(lost), lost[0].Value, lost[0].Revision))
		}
		if linErr != nil {
			why = append(why, "linearizability: "+linErr.Error())
		}
		if watchErr != nil {
			why = append(why, "watch: "+watchErr.Error())
		}
		switch {
		case recovery < 0:
			why = append(why, "recovery: no write acknowledged within 10 s of the fault")
		case recovery > budget:
			why = append(why, fmt.Sprintf("recovery: %v, over the %v budget", recovery.Round(time.Millisecond), budget))
		}
		if compactErr != nil {
			why = append(why, "compaction: "+compactErr.Error())
		}
		pf := perFault[fault]
		if pf == nil {
			pf = &tally{}
			perFault[fault] = pf
		}
		for _, x := range []*tally{total, pf} {
			x.add(ops, len(acks), len(lost), linErr == nil, watchErr != nil, recovery, len(why) > 0)
		}
		t.Logf("round %d: %s on %s for %v: %d ops, %d acknowledged, %d lost, %d batches, recovery %v, took %v (%s); %s",
			round, fault, cl.Nodes[victim].Name, hold.Round(time.Millisecond), ops, len(acks), len(lost), batches,
			recovery.Round(time.Millisecond), time.Since(started).Round(time.Millisecond), phases, verdict(why))
		if len(why) > 0 {
			failed = append(failed, round)
			keepRound(t, cl, load, round, strings.Join(why, "; "))
		}
	}
	summary := fmt.Sprintf("chaos: seed %d, commit %s, failed rounds %v\n  %-22s %s", seed, code, failed, "all", total)
	for _, f := range slices.Concat(loopbackFaults, netnsFaults, diskFaults) {
		if x := perFault[f]; x != nil {
			summary += fmt.Sprintf("\n  %-22s %s", f, x)
			delete(perFault, f) // follower-slow is in both lists
		}
	}
	fmt.Println(summary)
	t.Log(summary)
	if len(failed) > 0 {
		t.Fatalf("failed rounds: %v", failed)
	}
}

func verdict(why []string) string {
	if len(why) == 0 {
		return "ok"
	}
	return "FAILED: " + strings.Join(why, "; ")
}

// tally sums rounds of one kind.
type tally struct {
	rounds, failed, ops, acked, lost, linearizable, watchViolations int
	recoveries                                                      []time.Duration
}

func (x *tally) add(ops, acked, lost int, linearizable, watchViolation bool, recovery time.Duration, failed bool) {
	x.rounds++
	x.ops += ops
	x.acked += acked
	x.lost += lost
	if linearizable {
		x.linearizable++
	}
	if watchViolation {
		x.watchViolations++
	}
	if failed {
		x.failed++
	}
	x.recoveries = append(x.recoveries, recovery)
}

func (x *tally) String() string {
	r := slices.Clone(x.recoveries)
	slices.Sort(r)
	q := func(p float64) time.Duration {
		if len(r) == 0 {
			return 0
		}
		return r[min(len(r)-1, int(p*float64(len(r))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("rounds %d (failed %d), ops %d, acknowledged %d, lost %d, linearizable %d/%d, watch violations %d, recovery p50 %v p99 %v max %v",
		x.rounds, x.failed, x.ops, x.acked, x.lost, x.linearizable, x.rounds, x.watchViolations, q(0.5), q(0.99), q(1))
}

// commit names the code under test: HEAD, marked dirty if the tree differs.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	if exec.Command("git", "diff", "--quiet", "HEAD").Run() != nil {
		return strings.TrimSpace(string(out)) + "-dirty"
	}
	return strings.TrimSpace(string(out))
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

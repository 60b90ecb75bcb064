package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netns gives each member of a cluster a network namespace of its own,
// joined to the test's (the root namespace) by a veth pair on a bridge:
// member i is 10.231.B.(10+i), the test is 10.231.B.1, on a /24 chosen at
// random per cluster. Its faults are routes: a blackhole route in a
// member's namespace drops what it sends to one address, so a member can be
// cut off from its peers in both directions, in one direction only, or from
// its clients alone, and healed. It needs root and iproute2 (ip); the
// kernel here has no netem or tc actions, so no delays or port filters.
type netns struct {
	t      testing.TB
	subnet string // 10.231.B.
	bridge string
	names  []string // namespace of member i
}

// hasNetns reports whether this process can make network namespaces.
func hasNetns() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("network namespaces need root (this test runs as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("network namespaces need iproute2's ip: %v", err)
	}
	return nil
}

func newNetns(t testing.TB, size int) *netns {
	t.Helper()
	if err := hasNetns(); err != nil {
		t.Fatal(err)
	}
	b := 1 + rand.IntN(250)
	ns := &netns{t: t, subnet: fmt.Sprintf("10.231.%d.", b), bridge: fmt.Sprintf("cfb%d", b)}
	t.Cleanup(ns.remove)
	ns.ip("link", "add", ns.bridge, "type", "bridge")
	ns.ip("addr", "add", ns.subnet+"1/24", "dev", ns.bridge)
	ns.ip("link", "set", ns.bridge, "up")
	for i := 0; i < size; i++ {
		name := fmt.Sprintf("cfgc%dm%d", b, i)
		host, inner := fmt.Sprintf("cfh%dm%d", b, i), fmt.Sprintf("cfi%dm%d", b, i)
		ns.names = append(ns.names, name)
		ns.ip("netns", "add", name)
		ns.ip("link", "add", host, "type", "veth", "peer", "name", inner)
		ns.ip("link", "set", inner, "netns", name)
		ns.ip("link", "set", host, "master", ns.bridge)
		ns.ip("link", "set", host, "up")
		ns.ip("-n", name, "addr", "add", ns.addr(i)+"/24", "dev", inner)
		ns.ip("-n", name, "link", "set", inner, "up")
		ns.ip("-n", name, "link", "set", "lo", "up")
	}
	return ns
}

func (ns *netns) addr(i int) string { return fmt.Sprintf("%s%d", ns.subnet, 10+i) }

func (ns *netns) ip(args ...string) {
	ns.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		ns.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// drop makes namespace i drop what it sends to addr.
func (ns *netns) drop(i int, addr string) {
	ns.ip("-n", ns.names[i], "route", "add", "blackhole", addr+"/32")
}

// Isolate cuts member i off from every peer, both ways.
func (ns *netns) isolate(i int) {
	for j := range ns.names {
		if j != i {
			ns.drop(i, ns.addr(j))
			ns.drop(j, ns.addr(i))
		}
	}
}

// cannotSend drops what member i sends to its peers; it still hears them.
func (ns *netns) cannotSend(i int) {
	for j := range ns.names {
		if j != i {
			ns.drop(i, ns.addr(j))
		}
	}
}

// cannotReceive drops what the peers send to member i; it still reaches them.
func (ns *netns) cannotReceive(i int) {
	for j := range ns.names {
		if j != i {
			ns.drop(j, ns.addr(i))
		}
	}
}

// cutClients drops what member i sends to the test: its node's API and its
// etcd client port are cut from every client, its peers are not.
func (ns *netns) cutClients(i int) { ns.drop(i, ns.subnet+"1") }

// heal removes every fault.
func (ns *netns) heal() {
	for _, name := range ns.names {
		exec.Command("ip", "-n", name, "route", "flush", "type", "blackhole").Run()
	}
}

func (ns *netns) remove() {
	for _, name := range ns.names {
		exec.Command("ip", "netns", "del", name).Run() // its veth ends go with it
	}
	exec.Command("ip", "link", "del", ns.bridge).Run()
}

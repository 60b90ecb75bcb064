package watch_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"cfgcluster/watch"
)

// On an idle cluster (no write anywhere), etcd confirms the client current
// at every progress interval: its staleness stays within a few intervals
// and its watch is never restarted as stuck, before a member restart and
// after it.
func TestIdleClusterStaysFresh(t *testing.T) {
	e := setup(t)
	e.set(t, "log.level", "warn")
	reg := prometheus.NewRegistry()
	c := newClient(t, e.etcd, watch.WithRegisterer(reg))
	check := func(when string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			if s := c.Staleness(); s > time.Second {
				t.Fatalf("%s: staleness %v with a progress interval of 200ms", when, s)
			}
		}
	}
	stuck := func() float64 {
		n := 0.0
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "cfgcluster_watch_restarts_total" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetValue() == "stuck" {
							n += m.GetCounter().GetValue()
						}
					}
				}
			}
		}
		return n
	}
	check("idle")
	if n := stuck(); n > 0 {
		t.Fatalf("%v watch restarts as stuck on a healthy, idle cluster", n)
	}
	e.m.Restart(t)
	back := time.Now()
	eventually(t, "confirmed current by the restarted member", func() bool { return c.Staleness() < time.Since(back) })
	before := stuck() // the restart itself cut the watch
	check("idle after a restart")
	if n := stuck(); n > before {
		t.Fatalf("%v watch restarts as stuck after the member came back", n-before)
	}
}

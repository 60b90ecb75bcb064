package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/etcdtest"
	"cfgcluster/node"
)

var errStop = errors.New("stop")

// collect reads the stream until n batches arrived (or 10 s pass).
func collect(t *testing.T, c *api.Client, prefix string, since int64, n int) ([]api.WatchBatch, []api.WatchResync) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []api.WatchBatch
	var resyncs []api.WatchResync
	err := c.Watch(ctx, prefix, since, func(b api.WatchBatch) error {
		got = append(got, b)
		if len(got) == n {
			return errStop
		}
		return nil
	}, func(r api.WatchResync) error {
		resyncs = append(resyncs, r)
		if n == 0 {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		t.Fatalf("watch: %v", err)
	}
	return got, resyncs
}

// waitStreams waits until the node has n SSE streams.
func waitStreams(t testing.TB, n *node.Node, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(n.APIURL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(data), fmt.Sprintf("cfgcluster_sse_streams %d\n", want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d streams: %s", want, grep(data, "cfgcluster_sse_streams"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchStream(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	ctx := bg(t)
	done := make(chan []api.WatchBatch)
	go func() {
		b, _ := collect(t, c, "session.", 0, 2)
		done <- b
	}()
	waitStreams(t, n, 1)
	if _, err := c.Set(ctx, "log.level", api.SetRequest{Text: str("warn")}); err != nil { // not under the prefix
		t.Fatal(err)
	}
	r1, err := c.Apply(ctx, api.ApplyRequest{Changes: []api.Change{
		{Key: "session.absolute_timeout", Text: str("10h")}, {Key: "session.idle_timeout", Text: str("2h")}, {Key: "log.level", Text: str("error")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Set(ctx, "session.idle_timeout", api.SetRequest{Text: str("3h")})
	if err != nil {
		t.Fatal(err)
	}
	got := <-done
	if len(got) != 2 || got[0].Revision != r1.Revision || len(got[0].Events) != 2 || got[1].Revision != r2.Revision {
		t.Fatalf("stream: %+v", got)
	}
	if e := got[1].Events[0]; e.Kind != "update" || e.Old != "2h0m0s" || e.New != "3h0m0s" || e.Actor != "tester" {
		t.Fatalf("event: %+v", e)
	}

	// Resume after the first batch: the second comes from the node's history.
	again, _ := collect(t, c, "session.", r1.Revision, 1)
	if len(again) != 1 || again[0].Revision != r2.Revision {
		t.Fatalf("resume: %+v", again)
	}
	// Resuming from before the node's ring: etcd's history has the rest.
	early, rs := collect(t, c, "session.", 1, 2)
	if len(rs) != 0 || len(early) != 2 || early[0].Revision != r1.Revision || early[1].Revision != r2.Revision {
		t.Fatalf("resume from revision 1: %+v, resyncs %+v", early, rs)
	}
	// Resuming from ahead of the node (another cluster, a restore): a
	// resync notice at once, never silence.
	_, rs = collect(t, c, "", r2.Revision+1000, 0)
	if len(rs) != 1 || rs[0].Reason != "ahead" || rs[0].Revision < r2.Revision {
		t.Fatalf("resync from ahead: %+v", rs)
	}
	// Sensitive values are redacted on the stream too.
	go func() {
		b, _ := collect(t, c, "db.", 0, 1)
		done <- b
	}()
	waitStreams(t, n, 1)
	if _, err := c.Set(ctx, "db.password", api.SetRequest{Text: str("hunter2")}); err != nil {
		t.Fatal(err)
	}
	if b := <-done; b[0].Events[0].New != api.Redacted {
		t.Fatalf("sensitive value on the stream: %+v", b)
	}
}

// A stream resumes on a node that restarted since its Last-Event-ID (or on
// another node): the changes come from etcd's history, deletes with who
// made them and why; past etcd's compaction, a resync notice says so.
func TestWatchResumesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clientURL, peerURL := "http://"+etcdtest.FreeAddr(t), "http://"+etcdtest.FreeAddr(t)
	same := func(cfg *node.Config) {
		cfg.DataDir, cfg.ListenClientURLs, cfg.ListenPeerURLs = dir, []string{clientURL}, []string{peerURL}
	}
	n1, c1 := startNode(t, "../examples/schema.yaml", same)
	ctx := bg(t)
	r1, err := c1.Set(ctx, "session.idle_timeout", api.SetRequest{Text: str("20m"), Comment: "longer"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c1.Delete(ctx, "session.idle_timeout", "back to the default")
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	_, c2 := startNode(t, "", same)
	got, rs := collect(t, c2, "session.", r1.Revision-1, 2)
	if len(rs) != 0 || len(got) != 2 || got[0].Revision != r1.Revision || got[1].Revision != r2.Revision {
		t.Fatalf("resume across a restart: %+v, resyncs %+v", got, rs)
	}
	set, del := got[0].Events[0], got[1].Events[0]
	if set.Kind != "put" || set.New != "20m0s" || set.Comment != "longer" || set.Actor != "tester" {
		t.Fatalf("replayed set: %+v", set)
	}
	if del.Kind != "delete" || del.Old != "20m0s" || del.New != "15m0s" || del.Actor != "tester" || del.Comment != "back to the default" || del.Time == nil {
		t.Fatalf("replayed delete: %+v", del)
	}
	cred, err := auth.ReadEtcdCredential(node.EtcdCredentialFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := clientv3.New(cred.Config(clientv3.Config{Endpoints: []string{clientURL}}))
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	etcdtest.Compact(t, etcd)
	if _, rs := collect(t, c2, "", 1, 0); len(rs) != 1 || rs[0].Reason != "history" {
		t.Fatalf("resume from a compacted revision: %+v", rs)
	}
}

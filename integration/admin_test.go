package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
)

// Cluster status, member add (as a learner, promoted once caught up) and
// remove, defrag, and a snapshot restored into a new cluster with values,
// history, audit and schema intact.
func TestClusterAdministration(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 3, Schema: schema})
	ctx := ctxT(t)
	n := cl.Nodes[0]
	out, errOut, code := n.Adm(ctx, "cluster", "status")
	if code != 0 || strings.Count(out, "leader") != 1 || strings.Count(out, "follower") != 2 {
		t.Fatalf("cluster status: %s%s", out, errOut)
	}
	for _, args := range [][]string{{"set", "log.level", "warn"}, {"set", "log.level", "error"}, {"set", "taskqueue.max_workers", "20"}} {
		if _, e, code := n.Adm(ctx, args...); code != 0 {
			t.Fatal(e)
		}
	}

	// Join a fourth member.
	peer := "http://" + etcdtest.FreeAddr(t)
	var res *api.MemberAdded
	var err error
	waitFor(t, "etcd to accept a member (it waits 5 s after a start)", 20*time.Second, func() bool {
		res, err = n.API().AddMember(ctx, api.MemberAddRequest{Name: "n3", PeerURL: peer})
		if cfgerr.CodeOf(err) == cfgerr.Unavailable {
			time.Sleep(500 * time.Millisecond)
			return false
		}
		return true
	})
	if err != nil || res.InitialClusterState != "existing" || !strings.Contains(res.InitialCluster, "n3="+peer) {
		t.Fatalf("member add: %+v %v", res, err)
	}
	// Until it starts, the new member is unhealthy: cluster status exits 5
	// and names it (by the name it was added under).
	out, errOut, code = n.Adm(ctx, "cluster", "status")
	if code != 5 || !strings.Contains(errOut, "member n3") || !strings.Contains(errOut, "not started yet") || !strings.Contains(out, "learner") {
		t.Fatalf("cluster status with a member not started: exit %d\n%s%s", code, out, errOut)
	}
	// It logs in to etcd (whose auth is on) with the credential made for it.
	if res.EtcdUser != "cfgnode.n3" || res.EtcdPassword == "" {
		t.Fatalf("member add made no etcd credential: %+v", res)
	}
	joiner := newNode(t, "n3", peer)
	joiner.Join(res)
	joiner.Start()
	waitFor(t, "the learner's promotion", 30*time.Second, func() bool {
		st, err := n.API().Cluster(ctx)
		if err != nil || len(st.Members) != 4 {
			return false
		}
		for _, m := range st.Members {
			if m.Learner || !m.Healthy {
				return false
			}
		}
		return true
	})
	if v, err := joiner.API().Get(ctx, "log.level", 0); err != nil || v.Value != "error" {
		t.Fatalf("the new member serves %+v %v", v, err)
	}
	if _, e, code := n.Adm(ctx, "member", "remove", "n3"); code != 0 {
		t.Fatal(e)
	}
	// The removed member stops serving, says why, and exits cleanly: never
	// a stale read or a panic.
	err, exited := joiner.WaitExit(30 * time.Second)
	log, _ := os.ReadFile(joiner.LogPath)
	if !exited || err != nil || !strings.Contains(string(log), "removed from the cluster") || strings.Contains(string(log), "panic") {
		t.Fatalf("the removed member: exited %v (%v)\n%s", exited, err, tail(log, 20))
	}
	if st, _ := n.API().Cluster(ctx); len(st.Members) != 3 {
		t.Fatalf("members after remove: %+v", st.Members)
	}
	// Its etcd user went with it.
	root, err := clientv3.New(n.Etcd())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.UserGet(ctx, "cfgnode.n3"); !errors.Is(err, rpctypes.ErrUserNotFound) {
		t.Fatalf("the removed member's etcd user: %v", err)
	}

	if _, e, code := n.Adm(ctx, "defrag"); code != 0 {
		t.Fatal(e)
	}

	// Back up, restore into a new single-member cluster, compare.
	file := filepath.Join(t.TempDir(), "backup.db")
	if _, e, code := n.Adm(ctx, "snapshot", "save", file); code != 0 {
		t.Fatal(e)
	}
	if _, err := os.Stat(file + ".sha256"); err != nil {
		t.Fatal(err)
	}
	restored := newNode(t, "r0", "http://"+etcdtest.FreeAddr(t))
	restore := exec.Command(filepath.Join(Binaries(t), "cfgnode"), "restore", "--from", file, "--sha256", file+".sha256",
		"--name", "r0", "--data-dir", restored.DataDir, "--initial-advertise-peer-urls", restored.Peer)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("cfgnode restore: %v\n%s", err, out)
	}
	restored.Args = append(restored.Args, "--listen-peer-urls", restored.Peer, "--initial-advertise-peer-urls", restored.Peer)
	restored.Start()
	// The backup's etcd users were the old nodes': the restored node made
	// its own and turned etcd's auth back on.
	if out, err := etcdctl(t, restored.Client, "", "get", "x"); err == nil || !strings.Contains(out, "user name is empty") {
		t.Fatalf("the restored member takes anonymous clients: %v %s", err, out)
	}
	rc := restored.API()
	if v, err := rc.Get(ctx, "taskqueue.max_workers", 0); err != nil || v.Value != float64(20) {
		t.Fatalf("restored value: %+v %v", v, err)
	}
	h, err := rc.History(ctx, "log.level", 0)
	if err != nil || len(h.Entries) != 2 || h.Entries[1].Value != "warn" {
		t.Fatalf("restored history: %+v %v", h, err)
	}
	a, err := rc.Audit(ctx, "", 0, 0)
	values := 0 // the schema's and three sets; the rest is tokens (each node's admin token)
	for _, r := range a.Records {
		if r.Action != "auth" && r.Action != "refused" {
			values++
		}
	}
	if err != nil || values != 4 {
		t.Fatalf("restored audit: %d records %v", len(a.Records), err)
	}
	if s, err := rc.Schema(ctx); err != nil || !strings.Contains(s.Document, "idle-within-absolute") {
		t.Fatalf("restored schema: %v", err)
	}
	// A damaged backup is refused.
	os.WriteFile(file, []byte("garbage"), 0o644)
	bad := exec.Command(filepath.Join(Binaries(t), "cfgnode"), "restore", "--from", file, "--sha256", file+".sha256",
		"--data-dir", filepath.Join(t.TempDir(), "x"))
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "damaged") {
		t.Fatalf("a damaged snapshot was restored: %s", out)
	}
}

// A member over its backend quota raises NOSPACE: writes fail with a clear
// error, reads go on, and status and metrics show the alarm.
func TestNoSpaceAlarm(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema, "--quota-backend-bytes", "2097152"}})
	ctx := ctxT(t)
	c := n.API()
	big := map[string]any{"blob": strings.Repeat("x", 400<<10)}
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		big["n"] = i
		_, err = c.Set(ctx, "billing.limits", api.SetRequest{Value: big})
	}
	if cfgerr.CodeOf(err) != cfgerr.Unavailable || !strings.Contains(err.Error(), "NOSPACE") {
		t.Fatalf("writes past the quota: %v", err)
	}
	if _, err := c.Get(ctx, "billing.limits", 0); err != nil {
		t.Fatalf("reads during NOSPACE: %v", err)
	}
	st, err := c.Cluster(ctx)
	if err != nil || len(st.Alarms) != 1 || !strings.Contains(st.Alarms[0], "NOSPACE") {
		t.Fatalf("status alarms: %+v %v", st, err)
	}
	if _, body, _ := get(t, n.URL()+"/metrics", n.Token()); !strings.Contains(body, "cfgcluster_etcd_alarms 1") {
		t.Fatal("metrics do not show the alarm")
	}
}

// A learner added straight through etcd, past the authenticated API, is
// never promoted: it gets no vote.
func TestOnlyAPIAddedLearnersArePromoted(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 1, Schema: schema})
	n := cl.Nodes[0]
	ctx := ctxT(t)
	etcd, err := clientv3.New(n.Etcd())
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	peer := "http://" + etcdtest.FreeAddr(t)
	var resp *clientv3.MemberAddResponse
	waitFor(t, "etcd to accept a member (it waits 5 s after a start)", 20*time.Second, func() bool {
		resp, err = etcd.MemberAddAsLearner(ctx, []string{peer})
		if err != nil {
			time.Sleep(500 * time.Millisecond)
		}
		return err == nil
	})
	initial := n.Name + "=" + n.Peer + ",rogue=" + peer
	rogue := newNode(t, "rogue", peer)
	rogue.Args = append(rogue.Args, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--advertise-client-urls", rogue.Client, "--initial-cluster", initial, "--initial-cluster-state", "existing")
	rogue.Launch()
	waitFor(t, "the node to refuse the learner", 30*time.Second, func() bool {
		log, _ := os.ReadFile(n.LogPath)
		return strings.Contains(string(log), "not added with cfgadm member add: not promoting it")
	})
	ml, err := etcd.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		if m.ID == resp.Member.ID && !m.IsLearner {
			t.Fatal("a learner added past the API was promoted")
		}
	}
}

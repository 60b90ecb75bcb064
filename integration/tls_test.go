package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
)

// With TLS on every hop, etcd's ports take only TLS clients with the
// cluster's certificates, and a member whose certificate another CA signed
// cannot join: the cluster refuses its peer connections and it never
// starts, though it was added and has a valid etcd credential.
func TestTLSMembers(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	cl := NewCluster(t, Config{Size: 1, Schema: schema, TLS: true})
	n := cl.Nodes[0]
	ctx := ctxT(t)
	if !strings.HasPrefix(n.Client, "https://") || !strings.HasPrefix(n.Peer, "https://") {
		t.Fatalf("not TLS: %s %s", n.Client, n.Peer)
	}
	cred, err := auth.ReadEtcdCredential(filepath.Join(n.DataDir, "etcd.credential"))
	if err != nil {
		t.Fatal(err)
	}
	user := cred.User + ":" + cred.Password
	// Plain gRPC to the TLS client port, and TLS without a client
	// certificate, are refused; with the CA and a certificate, it serves.
	if out, err := etcdctl(t, strings.Replace(n.Client, "https://", "http://", 1), user, "get", "x"); err == nil {
		t.Fatalf("plain etcd client served: %s", out)
	}
	if out, err := etcdctl(t, n.Client, user, "--cacert", n.CA, "get", "x"); err == nil {
		t.Fatalf("etcd client without a certificate served: %s", out)
	}
	if out, err := etcdctl(t, n.Client, user, "--cacert", n.CA, "--cert", n.ClientCert, "--key", n.ClientKey,
		"get", "--print-value-only", "/cfgcluster/v1/values/log.level"); err != nil {
		t.Fatalf("etcd client with the cluster's certificates: %v\n%s", err, out)
	}

	peer := "https://" + etcdtest.FreeAddr(t)
	var res *api.MemberAdded
	waitFor(t, "etcd to accept a member", 20*time.Second, func() bool {
		res, err = n.API().AddMember(ctx, api.MemberAddRequest{Name: "intruder", PeerURL: peer})
		return cfgerr.CodeOf(err) != cfgerr.Unavailable
	})
	if err != nil {
		t.Fatal(err)
	}
	joiner := newNode(t, "intruder", peer)
	joiner.Join(res)
	// Its certificate is another CA's; it trusts the cluster's, so only the
	// cluster's check of its peers' certificates keeps it out.
	joiner.UseTLS(MakeCerts(t, "intruder"))
	for i := range joiner.Args {
		if joiner.Args[i] == "--peer-trusted-ca-file" {
			joiner.Args[i+1] = n.CA
		}
	}
	joiner.Launch()
	waitFor(t, "the cluster to refuse the intruder's certificate", 30*time.Second, func() bool {
		log, _ := os.ReadFile(n.LogPath)
		for _, l := range strings.Split(string(log), "\n") {
			if strings.Contains(l, "rejected connection on peer endpoint") && strings.Contains(l, "certificate signed by unknown authority") {
				return true
			}
		}
		return false
	})
	st, err := n.API().Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.Name == "intruder" && (m.Healthy || !m.Learner) {
			t.Fatalf("the intruder joined: %+v", m)
		}
	}
	// The intruder gives up: it cannot read the cluster's membership.
	err, exited := joiner.WaitExit(30 * time.Second)
	log, _ := os.ReadFile(joiner.LogPath)
	if !exited || err == nil || !strings.Contains(string(log), "could not retrieve cluster information") {
		t.Fatalf("the intruder: exited %v (%v)\n%s", exited, err, log)
	}
}

package node

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
)

func parseURLs(flag string, ss []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--%s: %q is not a URL such as http://127.0.0.1:2379", flag, s)
		}
		out = append(out, *u)
	}
	return out, nil
}

// startEtcd starts the embedded member and waits until it serves.
func (n *Node) startEtcd(ctx context.Context) error {
	c := n.cfg
	ec := embed.NewConfig()
	ec.Name, ec.Dir = c.Name, c.DataDir
	var err error
	if ec.ListenClientUrls, err = parseURLs("listen-client-urls", c.ListenClientURLs); err != nil {
		return err
	}
	if ec.ListenPeerUrls, err = parseURLs("listen-peer-urls", c.ListenPeerURLs); err != nil {
		return err
	}
	if ec.AdvertiseClientUrls, err = parseURLs("advertise-client-urls", c.AdvertiseClientURLs); err != nil {
		return err
	}
	if ec.AdvertisePeerUrls, err = parseURLs("initial-advertise-peer-urls", c.InitialAdvertisePeerURL); err != nil {
		return err
	}
	if err := c.etcdTLS(ec); err != nil {
		return err
	}
	ec.InitialCluster = c.InitialCluster
	switch c.InitialClusterState {
	case "", embed.ClusterStateFlagNew:
		ec.ClusterState = embed.ClusterStateFlagNew
	case embed.ClusterStateFlagExisting:
		ec.ClusterState = embed.ClusterStateFlagExisting
	default:
		return fmt.Errorf("--initial-cluster-state: %q is not new or existing", c.InitialClusterState)
	}
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.InitialClusterFromName(c.Name)
	}
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = c.AutoCompactionRetention
	ec.QuotaBackendBytes = c.QuotaBackendBytes
	ec.TickMs, ec.ElectionMs = c.HeartbeatMs, c.ElectionMs
	// etcd keeps the raft log in memory until a snapshot: entries carry
	// values and audit entries of up to a few MiB, so snapshot often (cheap
	// for a v3 member: the state is the bbolt file) and keep few entries for
	// followers to catch up from. 100,000 entries (etcd's default) of 40 KB
	// values held 388 MiB after 4,000 writes.
	ec.SnapshotCount = 2000
	ec.SnapshotCatchUpEntries = 1000
	// Room for a 1 MiB value with its old value in the audit record, and for
	// a whole-namespace rollback in one transaction.
	ec.MaxRequestBytes = 8 << 20
	ec.MaxTxnOps = 4096
	// The node's own client pings its member every 2 s (etcd's default
	// minimum is 5 s), so a dead connection is noticed in seconds.
	ec.GRPCKeepAliveMinTime = time.Second
	ec.Logger = "zap"
	// etcd logs its listeners' "use of closed network connection" as errors
	// on every clean Close: Close raises this level to silence them.
	n.etcdLevel = zap.NewAtomicLevelAt(zap.WarnLevel)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(n.log.Named("etcd").WithOptions(zap.IncreaseLevel(n.etcdLevel), zap.WrapCore(redactTokens)))
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	n.etcd = e
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd member %q not ready after 60s (is a quorum of --initial-cluster up?)", c.Name)
	}
}

// etcdTLS sets the member's TLS, which https URLs need: the client port
// serves the API's certificate, peers their own (etcd's --peer-* flags).
// As etcd does, a member that trusts a CA (--trusted-ca-file,
// --peer-trusted-ca-file) requires its clients (peers) to present a
// certificate that CA signed, whether or not --client-cert-auth is given.
// A member of another CA therefore cannot join.
func (c *Config) etcdTLS(ec *embed.Config) error {
	https := func(us []url.URL) bool {
		return slices.ContainsFunc(us, func(u url.URL) bool { return u.Scheme == "https" })
	}
	if https(ec.ListenClientUrls) {
		if c.CertFile == "" || c.KeyFile == "" {
			return fmt.Errorf("--listen-client-urls: https needs --cert-file and --key-file")
		}
		// Not etcd's ClientCertAuth: with it, etcd takes a request without
		// a token as the user named by the certificate's CN, and a node's
		// client made while etcd's auth was still off would be refused
		// once it is on, rather than log in. Identity is the etcd user;
		// the certificate (required: a CA is given) secures the channel.
		ec.ClientTLSInfo = transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.TrustedCAFile}
	}
	if https(ec.ListenPeerUrls) || https(ec.AdvertisePeerUrls) {
		if c.PeerCertFile == "" || c.PeerKeyFile == "" || c.PeerTrustedCAFile == "" {
			return fmt.Errorf("--listen-peer-urls: https needs --peer-cert-file, --peer-key-file and --peer-trusted-ca-file")
		}
		ec.PeerTLSInfo = transport.TLSInfo{CertFile: c.PeerCertFile, KeyFile: c.PeerKeyFile, TrustedCAFile: c.PeerTrustedCAFile, ClientCertAuth: c.PeerClientCertAuth}
	} else if c.PeerCertFile != "" {
		return fmt.Errorf("--peer-cert-file: the peer URLs are not https (--listen-peer-urls, --initial-advertise-peer-urls)")
	}
	return nil
}

// etcdClientConfig starts the embedded member (or, in external mode, none)
// and returns the configuration of the node's etcd client.
func (n *Node) etcdClientConfig(ctx context.Context) (clientv3.Config, error) {
	cc := clientv3.Config{
		// A change carries up to 1 MiB values with their old values in the
		// audit record: room for it (the embedded members allow 8 MiB).
		MaxCallSendMsgSize:   10 << 20,
		MaxCallRecvMsgSize:   64 << 20,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               n.log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
		Context:              context.WithoutCancel(ctx),
	}
	c := n.cfg
	if len(c.EtcdEndpoints) == 0 {
		if err := n.startEtcd(ctx); err != nil {
			return cc, err
		}
		// The node talks to its own member only (followMember fails over
		// to the others while it has no leader): a fault of another member
		// then costs this node nothing.
		cc.Endpoints = n.ownEndpoints()
		if n.learner() {
			// A learner serves no client requests until it is promoted.
			cc.Endpoints = n.otherEndpoints()
		}
		cc.DialKeepAliveTime, cc.DialKeepAliveTimeout = 2*time.Second, time.Second
		if n.etcd.Config().ClientTLSInfo.CertFile != "" {
			// The node's client presents its certificate (a member that
			// trusts a CA asks for one) and trusts the cluster's CA.
			tc, err := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.TrustedCAFile}.ClientConfig()
			if err != nil {
				return cc, fmt.Errorf("--cert-file/--key-file/--trusted-ca-file: %w", err)
			}
			cc.TLS = tc
		}
		cred, err := n.nodeCredential()
		if err != nil {
			return cc, fmt.Errorf("this node's etcd credential: %w", err)
		}
		if err := n.enableEtcdAuth(ctx, cc, cred); err != nil {
			return cc, err
		}
		return cred.Config(cc), nil
	}
	cc.Endpoints = c.EtcdEndpoints
	cc.Username, cc.Password = c.EtcdUser, c.EtcdPassword
	if user, pass, ok := strings.Cut(c.EtcdUser, ":"); ok && c.EtcdPassword == "" {
		cc.Username, cc.Password = user, pass
	}
	if c.EtcdCA != "" || c.EtcdCert != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: c.EtcdCA, CertFile: c.EtcdCert, KeyFile: c.EtcdKey}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return cc, fmt.Errorf("--etcd-cacert/--etcd-cert/--etcd-key: %w", err)
		}
		cc.TLS = tc
	}
	return cc, nil
}

// ownEndpoints are the client URLs the node's own member listens on (the
// listeners' own addresses: a port of 0 is the one the kernel gave).
func (n *Node) ownEndpoints() []string {
	scheme := n.etcd.Config().ListenClientUrls[0].Scheme
	var out []string
	for _, l := range n.etcd.Clients {
		out = append(out, scheme+"://"+l.Addr().String())
	}
	return out
}

// learner reports whether the node's member is a learner. It reads the
// membership rather than etcd's IsLearner, which panics once the member has
// been removed from the cluster.
func (n *Node) learner() bool {
	m := n.etcd.Server.Cluster().Member(n.etcd.Server.MemberID())
	return m != nil && m.IsLearner
}

// otherEndpoints are the client URLs of the cluster's other voting members.
func (n *Node) otherEndpoints() []string {
	var out []string
	for _, m := range n.etcd.Server.Cluster().Members() {
		if m.ID != n.etcd.Server.MemberID() && !m.IsLearner {
			out = append(out, m.ClientURLs...)
		}
	}
	return out
}

// followMember keeps the node's etcd client on its own member while that
// member has a leader (and is not a learner, which serves no clients), and
// on the other members while it has none (cut off from the quorum, or
// electing) for longer than memberGrace. It reads the member's state
// in-process: no request, no timeout.
func (n *Node) followMember(ctx context.Context) {
	defer n.bg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	own, away := n.ownEndpoints(), n.learner()
	var lost time.Time // when the member was first seen without a leader
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.stopped.Load() != nil {
			return // removed from the cluster, or stopped: watchMember shuts the node down
		}
		hasLeader := n.etcd.Server.Leader() != types.ID(raft.None) && !n.learner()
		switch {
		case hasLeader:
			lost = time.Time{}
			if away {
				n.client.SetEndpoints(own...)
				away = false
				n.log.Info("etcd client back on this node's member")
			}
		case lost.IsZero():
			lost = time.Now()
		case !away && time.Since(lost) > memberGrace:
			if others := n.otherEndpoints(); len(others) > 0 {
				n.client.SetEndpoints(others...)
				away = true
				n.log.Warn("this node's member has no leader: etcd client moved to the other members", zap.Strings("endpoints", others))
			}
		}
	}
}

// memberGrace is how long the node's member may be without a leader (an
// election takes about a second) before the client leaves it.
const memberGrace = time.Second

// requestTimeout bounds each etcd request of the store: shorter than etcd's
// own request timeout (about 7 s), so a request to a member that cannot
// reach the quorum fails in time for the caller to try again elsewhere.
const requestTimeout = 3 * time.Second

// guardedKV gives every request a deadline and requires its member to have
// a leader (a member without one answers at once instead of waiting).
type guardedKV struct{ clientv3.KV }

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), requestTimeout)
}

func (g guardedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return g.KV.Get(ctx, key, opts...)
}

func (g guardedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return g.KV.Put(ctx, key, val, opts...)
}

func (g guardedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return g.KV.Delete(ctx, key, opts...)
}

func (g guardedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return g.KV.Do(ctx, op)
}

func (g guardedKV) Txn(ctx context.Context) clientv3.Txn {
	ctx, cancel := bounded(ctx)
	return &guardedTxn{Txn: g.KV.Txn(ctx), cancel: cancel}
}

// guardedTxn releases its deadline's timer once committed.
type guardedTxn struct {
	clientv3.Txn
	cancel context.CancelFunc
}

func (t *guardedTxn) If(c ...clientv3.Cmp) clientv3.Txn  { t.Txn = t.Txn.If(c...); return t }
func (t *guardedTxn) Then(o ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(o...); return t }
func (t *guardedTxn) Else(o ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(o...); return t }
func (t *guardedTxn) Commit() (*clientv3.TxnResponse, error) {
	defer t.cancel()
	return t.Txn.Commit()
}

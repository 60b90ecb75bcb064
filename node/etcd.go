package node

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
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
	// Room for a 1 MiB value with its old value in the audit record, and for
	// a whole-namespace rollback in one transaction.
	ec.MaxRequestBytes = 8 << 20
	ec.MaxTxnOps = 4096
	ec.Logger = "zap"
	// etcd logs its listeners' "use of closed network connection" as errors
	// on every clean Close: Close raises this level to silence them.
	n.etcdLevel = zap.NewAtomicLevelAt(zap.WarnLevel)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(n.log.Named("etcd").WithOptions(zap.IncreaseLevel(n.etcdLevel)))
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
		cc.Endpoints = n.etcd.Server.Cluster().ClientURLs()
		return cc, nil
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

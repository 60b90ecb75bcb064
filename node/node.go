package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/leases"
	"cfgcluster/watch"
)

// Config configures a node. Names follow etcd's flags where they mean the same.
type Config struct {
	Name                    string   // member name (default "default")
	DataDir                 string   // etcd data (default ./cfgnode-data)
	ListenClientURLs        []string // default http://127.0.0.1:2379
	ListenPeerURLs          []string // default http://127.0.0.1:2380
	AdvertiseClientURLs     []string // default: ListenClientURLs
	InitialAdvertisePeerURL []string // default: ListenPeerURLs
	InitialCluster          string   // default: this member alone
	InitialClusterState     string   // new (default) or existing (joining a running cluster)
	// EtcdCredentialFile is the etcd credential cfgadm member add made for
	// a joining member; the node keeps it in its data directory at its
	// first start (EtcdCredentialFile(DataDir)).
	EtcdCredentialFile string
	// EncryptionKeyring is the keyring file of key-encryption keys that
	// wrap the data keys sealing sensitive values; every node of a cluster
	// needs the same one. Empty: KeyringFile(DataDir), made at first start.
	EncryptionKeyring       string
	AutoCompactionRetention string // etcd periodic compaction window (default 72h)
	QuotaBackendBytes       int64  // etcd backend quota (0: etcd's 2 GiB)
	// Raft timing, as etcd's --heartbeat-interval and --election-timeout, in
	// milliseconds (default 50 and 500: a leader lost is replaced in about a
	// second on a LAN; raise both on slow networks or disks).
	HeartbeatMs, ElectionMs uint

	// External mode: with EtcdEndpoints set, the node runs no member of its
	// own and uses the etcd cluster there. The member fields above are unused.
	EtcdEndpoints []string
	EtcdUser      string // user:password also accepted
	EtcdPassword  string
	EtcdCA        string // PEM CA bundle for https endpoints
	EtcdCert      string // PEM client certificate
	EtcdKey       string // PEM client key

	APIAddr    string // HTTP API listen address (default 127.0.0.1:7380)
	SchemaFile string // a schema to apply at first start, when none is stored
	Prefix     string // etcd key prefix (default kv.DefaultPrefix)
	// HTTP limits (zero: the defaults in setDefaults). A request must send
	// its headers within ReadHeaderTimeout and its body within ReadTimeout;
	// an answer must be written within WriteTimeout (an SSE event within
	// EventWriteTimeout: a client that stops reading is dropped); an idle
	// keep-alive connection is closed after IdleTimeout.
	ReadHeaderTimeout   time.Duration
	ReadTimeout         time.Duration
	WriteTimeout        time.Duration
	EventWriteTimeout   time.Duration
	IdleTimeout         time.Duration
	MaxConnections      int // open connections to the API at once
	MaxStreamsPerClient int // SSE streams from one address at once

	// AuditRetention bounds the audit trail (zero: kv.DefaultRetention);
	// every node prunes it every PruneEvery (default 10 minutes).
	AuditRetention kv.Retention
	PruneEvery     time.Duration
	// AllowedOrigins are web origins (scheme://host[:port]) besides the
	// node's own whose browsers may write; every other cross-origin write
	// is refused.
	AllowedOrigins []string

	// RateReads and RateWrites are the requests a second one token may make
	// of this node, reads and writes apart (bursts of twice as many);
	// AuthFailureRate the failed authentications a second one address may
	// make (bursts of 100). Over them: 429. Zero: the defaults; negative:
	// no limit.
	RateReads, RateWrites, AuthFailureRate int

	// CertFile and KeyFile serve the API over TLS; TrustedCAFile is the CA
	// of the cluster's certificates, which with ClientCertAuth every API
	// client must present a certificate signed by.
	// With https --listen-client-urls, the embedded member's client port
	// serves the same certificate and, with ClientCertAuth, requires one
	// from its clients too (etcd's flags of these names).
	CertFile, KeyFile, TrustedCAFile string
	ClientCertAuth                   bool
	// TLS between etcd peers, as etcd's --peer-* flags: needed when
	// --listen-peer-urls are https; with PeerClientCertAuth a peer must
	// present a certificate signed by PeerTrustedCAFile.
	PeerCertFile, PeerKeyFile, PeerTrustedCAFile string
	PeerClientCertAuth                           bool

	// FlagdSyncAddr serves flagd's sync protocol (gRPC) there; "" not at
	// all. FlagdSyncAnonymous serves every flag there without a token.
	FlagdSyncAddr      string
	FlagdSyncAnonymous bool
	// PublicMetrics serves /metrics without a credential (for a
	// Prometheus that cannot send one); by default it needs read.
	PublicMetrics bool

	Logger *zap.Logger
	// OnReady, when set, is called by Run once the node serves.
	OnReady func(*Node)
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defs := func(s *[]string, v []string) {
		if len(*s) == 0 {
			*s = v
		}
	}
	def(&c.Name, "default")
	def(&c.DataDir, "./cfgnode-data")
	defs(&c.ListenClientURLs, []string{"http://127.0.0.1:2379"})
	defs(&c.ListenPeerURLs, []string{"http://127.0.0.1:2380"})
	defs(&c.AdvertiseClientURLs, c.ListenClientURLs)
	defs(&c.InitialAdvertisePeerURL, c.ListenPeerURLs)
	def(&c.AutoCompactionRetention, "72h")
	def(&c.APIAddr, "127.0.0.1:7380")
	intDef := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	intDef(&c.RateReads, 10000)
	intDef(&c.RateWrites, 1000)
	intDef(&c.AuthFailureRate, 10)
	if c.HeartbeatMs == 0 {
		c.HeartbeatMs = 50
	}
	if c.ElectionMs == 0 {
		c.ElectionMs = 500
	}
	durDef := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	durDef(&c.ReadHeaderTimeout, 10*time.Second)
	durDef(&c.ReadTimeout, time.Minute)
	durDef(&c.WriteTimeout, time.Minute)
	durDef(&c.EventWriteTimeout, 10*time.Second)
	durDef(&c.IdleTimeout, 2*time.Minute)
	if c.MaxConnections <= 0 {
		c.MaxConnections = 16384
	}
	if c.MaxStreamsPerClient <= 0 {
		c.MaxStreamsPerClient = 4096
	}
	if c.AuditRetention == (kv.Retention{}) {
		c.AuditRetention = kv.DefaultRetention
	}
	if c.PruneEvery <= 0 {
		c.PruneEvery = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Node is a running cfgnode.
type Node struct {
	cfg           Config
	log           *zap.Logger
	etcd          *embed.Etcd
	etcdLevel     zap.AtomicLevel
	client        *clientv3.Client
	store         *kv.Store
	watch         *watch.Client          // the node's own view, kept current by one etcd watch
	auth          *auth.Store            // tokens and roles, kept current by a watch of the auth range
	limits        *limits                // request rates per token and failed authentications per address
	refused       *refusals              // refused requests, on their way to the audit trail
	stopped       atomic.Pointer[string] // why the member stopped serving (removed from the cluster); nil while it serves
	memberGone    chan struct{}          // closed when the embedded member stops on its own
	ring          *ring
	proposals     *proposalFeed // proposals made or decided, for SSE streams that ask
	flagdSync     *grpc.Server  // flagd's sync protocol (--flagd-sync-addr); nil: not served
	flagdSyncAddr string
	kekFile       string       // the encryption keyring's file
	streams       perClient    // SSE streams by client address
	encoded       encodedCache // SSE encodings shared by streams
	maint         *leases.Maintenance
	sched         *leases.Scheduler // opens scheduled windows (elected among nodes)
	bg            sync.WaitGroup    // background loops (learner promotion)
	stopBg        context.CancelFunc
	done          chan struct{}        // closed by Close: ends SSE streams
	reg           *prometheus.Registry // this node's metrics; etcd's and Go's are in the default registry
	ln            net.Listener
	srv           *http.Server
	served        chan error
	closing       sync.Once
	closed        error
}

// Start starts the embedded etcd member, waits for it to be ready, applies
// the schema file if no schema is stored yet, and starts serving the API.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg.setDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), served: make(chan error, 1), done: make(chan struct{}),
		memberGone: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	cc, err := n.etcdClientConfig(ctx)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(cc)
	if errors.Is(err, rpctypes.ErrAuthFailed) {
		return nil, fmt.Errorf("etcd refused this node's credential (etcd user %s): %w; an embedded member's is in %s, made at its first start (or given by --etcd-credential-file after cfgadm member add)",
			cc.Username, err, EtcdCredentialFile(cfg.DataDir))
	}
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	n.client = c
	// Fail now, clearly, if etcd cannot be reached or refuses what the
	// node must do.
	if err := checkEtcdAccess(ctx, c, kv.NewLayout(cfg.Prefix), cc.Username); err != nil {
		if n.etcd == nil {
			return nil, fmt.Errorf("--etcd-endpoints %v: %w", cfg.EtcdEndpoints, err)
		}
		return nil, err
	}
	n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cfgcluster_etcd_alarms", Help: "Active etcd alarms (NOSPACE, CORRUPT): while any is raised, writes fail.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		al, err := c.AlarmList(ctx)
		if err != nil {
			return -1
		}
		return float64(len(al.Alarms))
	}))
	kek, kekFile, err := n.encryptionProvider()
	if err != nil {
		return nil, err
	}
	n.kekFile = kekFile
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	n.stopBg = stopBg
	auditIndex := kv.NewAuditIndex(c, kv.NewLayout(cfg.Prefix), n.log.Named("audit-index"))
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		auditIndex.Run(bgCtx)
	}()
	n.store = kv.New(guardedKV{c}, kv.WithPrefix(cfg.Prefix), kv.WithLogger(n.log.Named("kv")), kv.WithMetrics(kv.NewMetrics(n.reg)),
		kv.WithProvider(kek), kv.WithAuditIndex(auditIndex))
	if err := n.checkKeys(ctx, kekFile); err != nil {
		return nil, err
	}
	if err := n.loadSchemaFile(ctx); err != nil {
		return nil, err
	}
	n.watch, err = watch.New(ctx, c, watch.WithMirror(), watch.WithPrefix(cfg.Prefix), watch.WithRegisterer(n.reg), watch.WithKeyring(n.store.Opener()),
		watch.WithLogger(n.log.Named("watch")), watch.WithWorkers(16), watch.WithQueueSize(1024))
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	n.limits = newLimits(cfg, n.reg)
	n.refused = newRefusals(n.reg)
	n.auth = auth.NewStore(c, n.store, n.log.Named("auth"))
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	err = n.auth.WaitReady(actx)
	acancel()
	if err != nil {
		return nil, err
	}
	if err := n.bootstrapToken(ctx); err != nil {
		// A node that cannot make its token (etcd full, or an external
		// etcd that refuses the write) still serves the tokens there are.
		n.log.Error("no admin token for this node: use another admin's, or cfgadm token create once writes work", zap.Error(err))
	}
	n.ring = newRing(ringBatches, ringBytes, n.watch.Revision(), n.reg)
	n.proposals = newProposalFeed()
	n.watch.Subscribe("*", n.ring.handler())
	n.maint = leases.NewMaintenance(c, n.store, 0)
	n.sched = leases.StartScheduler(ctx, n.maint, cfg.Name, 2, leases.WithSchedulerLogger(n.log.Named("scheduler")))
	n.bg.Add(4)
	go func() {
		defer n.bg.Done()
		n.proposals.run(bgCtx, c, n.store.Layout(), n.watch.Revision(), n.log.Named("proposals"))
	}()
	go n.promoteLearners(bgCtx)
	go n.pruneAudit(bgCtx)
	go n.writeRefusals(bgCtx)
	if n.etcd != nil {
		n.bg.Add(2)
		go n.watchMember(bgCtx)
		go n.followMember(bgCtx)
	}
	if err := n.serve(); err != nil {
		return nil, err
	}
	if cfg.FlagdSyncAddr != "" {
		if err := n.serveFlagdSync(cfg.FlagdSyncAddr, cfg.FlagdSyncAnonymous); err != nil {
			return nil, err
		}
	}
	ok = true
	n.log.Info("cfgnode ready", zap.String("name", cfg.Name), zap.String("api", n.APIURL()),
		zap.Strings("etcd", n.ClientURLs()))
	return n, nil
}

// Run starts a node and serves until ctx is done, then closes it.
func Run(ctx context.Context, cfg Config) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.OnReady != nil {
		cfg.OnReady(n)
	}
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
	case err = <-n.served:
		n.log.Error("API server failed", zap.Error(err))
	case err = <-n.etcdErr():
		n.log.Error("etcd failed", zap.Error(err))
	case <-n.memberGone:
		n.log.Warn("shutting down: " + *n.stopped.Load())
	}
	return errors.Join(err, n.Close())
}

// APIURL is the base URL of the node's HTTP API.
func (n *Node) APIURL() string {
	if n.cfg.CertFile != "" {
		return "https://" + n.ln.Addr().String()
	}
	return "http://" + n.ln.Addr().String()
}

// ClientURLs are the etcd client URLs of the node's member.
func (n *Node) ClientURLs() []string {
	if n.etcd == nil {
		return n.cfg.EtcdEndpoints
	}
	return n.etcd.Server.Cluster().ClientURLs()
}

// etcdErr reports the embedded member's fatal errors (never, when external).
func (n *Node) etcdErr() <-chan error {
	if n.etcd == nil {
		return nil
	}
	return n.etcd.Err()
}

// watchMember notices the embedded member stopping on its own: removed from
// the cluster (cfgadm member remove), or failed. The node then stops
// serving (every request but /healthz answers 503, saying why) and Run
// returns, so the process exits cleanly rather than serve stale reads or
// send writes to a stopped member.
func (n *Node) watchMember(ctx context.Context) {
	defer n.bg.Done()
	select {
	case <-ctx.Done():
		return
	case <-n.etcd.Server.StopNotify():
	}
	why := "this node's etcd member stopped"
	if n.etcd.Server.Cluster().Member(n.etcd.Server.MemberID()) == nil {
		why = "this node's etcd member was removed from the cluster (cfgadm member remove): it no longer serves; delete its data directory before it joins again"
	}
	n.stopped.Store(&why)
	n.log.Error(why, zap.String("member", n.etcd.Server.MemberID().String()))
	close(n.memberGone)
}

// serving is nil while the node serves, and says why not once its member stopped.
func (n *Node) serving() error {
	if why := n.stopped.Load(); why != nil {
		return cfgerr.Errorf(cfgerr.Unavailable, "", "", "%s", *why)
	}
	return nil
}

// Store is the node's store.
func (n *Node) Store() *kv.Store { return n.store }

// Close stops serving (requests in flight get up to 10 s to finish), then
// closes the etcd client and member. It is safe to call more than once.
func (n *Node) Close() error {
	n.closing.Do(func() {
		var errs []error
		close(n.done)
		if n.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, n.srv.Shutdown(ctx))
			cancel()
		}
		if n.flagdSync != nil {
			n.flagdSync.Stop() // its streams ended with done
		}
		if n.stopBg != nil {
			n.stopBg()
			n.bg.Wait()
		}
		if n.sched != nil {
			n.sched.Close()
		}
		if n.watch != nil {
			errs = append(errs, n.watch.Close())
		}
		if n.auth != nil {
			n.auth.Close()
		}
		if n.client != nil {
			errs = append(errs, n.client.Close())
		}
		if n.etcd != nil {
			n.etcdLevel.SetLevel(zap.FatalLevel)
			n.etcd.Close()
		}
		n.closed = errors.Join(errs...)
	})
	return n.closed
}

func (n *Node) loadSchemaFile(ctx context.Context) error {
	if n.cfg.SchemaFile == "" {
		return nil
	}
	doc, err := os.ReadFile(n.cfg.SchemaFile)
	if err != nil {
		return fmt.Errorf("--schema: %w", err)
	}
	applied, err := n.store.InitSchema(ctx, kv.Meta{Actor: "cfgnode:" + n.cfg.Name, Comment: "--schema " + n.cfg.SchemaFile}, doc)
	if err != nil {
		return fmt.Errorf("--schema %s: %w", n.cfg.SchemaFile, err)
	}
	if !applied {
		n.log.Info("a schema is stored already; --schema is used only at first start")
	}
	return nil
}

// ready reports why the node cannot serve yet, or nil.
func (n *Node) ready(ctx context.Context) error {
	if err := n.serving(); err != nil {
		return err
	}
	if n.etcd != nil {
		select {
		case <-n.etcd.Server.ReadyNotify():
		default:
			return cfgerr.Errorf(cfgerr.Unavailable, "", "", "etcd is not ready")
		}
	}
	_, _, rev, err := n.store.Schema(ctx)
	if err != nil {
		return err
	}
	if rev == 0 {
		return cfgerr.Errorf(cfgerr.Unavailable, "", "schema", "no schema is loaded: apply one with cfgadm schema apply -f FILE")
	}
	return nil
}

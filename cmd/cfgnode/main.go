package main

import (
	"errors"
	"fmt"
	"golang.org/x/term"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"cfgcluster/clientconfig"
	"cfgcluster/kv"
	"cfgcluster/node"
)

func main() {
	app := &cli.App{
		Name:     "cfgnode",
		Usage:    "run a cfgcluster node (an embedded etcd member and the HTTP API)",
		Flags:    flags(),
		Action:   run,
		Commands: []*cli.Command{restoreCommand(), certsCommand(), keyringCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "cfgnode:", err)
		os.Exit(1)
	}
}

func flag(name, value, usage string) *cli.StringFlag {
	env := "CFGNODE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: []string{env}}
}

func boolFlag(name string, value bool, usage string) *cli.BoolFlag {
	env := "CFGNODE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return &cli.BoolFlag{Name: name, Value: value, Usage: usage, EnvVars: []string{env}}
}

func flags() []cli.Flag {
	return []cli.Flag{
		flag("name", "default", "member name"),
		flag("data-dir", "./cfgnode-data", "directory of the etcd member's data"),
		flag("listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to serve etcd clients on"),
		flag("listen-peer-urls", "http://127.0.0.1:2380", "comma-separated URLs to serve etcd peers on"),
		flag("advertise-client-urls", "", "client URLs to advertise (default: --listen-client-urls)"),
		flag("initial-advertise-peer-urls", "", "peer URLs to advertise (default: --listen-peer-urls)"),
		flag("initial-cluster", "", "initial cluster, name=peerURL,... (default: this member alone)"),
		flag("initial-cluster-state", "new", "new, or existing to join a running cluster (after cfgadm member add)"),
		flag("etcd-credential-file", "", "a joining member's etcd credential, which cfgadm member add wrote (kept in --data-dir from then on)"),
		flag("encryption-keyring", "", "the keyring of key-encryption keys that wrap the data keys sealing sensitive values; the same file on every node (default: DATA-DIR.keyring, made at first start; cfgnode keyring makes one)"),
		flag("auto-compaction-retention", "72h", "keep etcd history for this long (periodic compaction)"),
		flag("heartbeat-interval", "50", "raft heartbeat interval in milliseconds (etcd's flag; its default is 100)"),
		flag("election-timeout", "500", "raft election timeout in milliseconds (etcd's flag; its default is 1000): how soon a lost leader is replaced"),
		flag("quota-backend-bytes", "0", "etcd backend quota in bytes; past it etcd raises NOSPACE (0: etcd's 2 GiB)"),
		flag("api-addr", "127.0.0.1:7380", "address of the HTTP API"),
		flag("cert-file", "", "serve the API over TLS with this certificate (PEM); cfgnode certs makes development ones"),
		flag("key-file", "", "the certificate's private key (PEM)"),
		flag("trusted-ca-file", "", "the CA of this cluster's certificates: cfgadm's context trusts it, and with --client-cert-auth clients must present a certificate it signed"),
		boolFlag("client-cert-auth", false, "require a client certificate signed by --trusted-ca-file on the API (tokens are still required); an https etcd client port requires one whenever --trusted-ca-file is given"),
		flag("peer-cert-file", "", "TLS between etcd peers (https --listen-peer-urls): this member's certificate (PEM)"),
		flag("peer-key-file", "", "the peer certificate's private key (PEM)"),
		flag("peer-trusted-ca-file", "", "the CA that signed every member's peer certificate"),
		boolFlag("peer-client-cert-auth", false, "etcd's flag, accepted for its sake: peers must present a certificate signed by --peer-trusted-ca-file whenever that is given (a member with another CA's cannot join)"),
		flag("schema", "", "schema file to apply at first start, when none is stored"),
		flag("prefix", "/cfgcluster/", "etcd key prefix"),
		flag("max-connections", "16384", "open API connections at once; more wait"),
		flag("max-streams-per-client", "4096", "SSE watch streams one client address may hold open"),
		flag("audit-retention", "2160h", "keep audit records this long (each key keeps its last change before it; 0: no age limit)"),
		flag("audit-max-records", "100000", "keep at most this many audit records (0: no count limit)"),
		flag("audit-prune-interval", "10m", "how often each node prunes the audit trail to its retention"),
		flag("allowed-origins", "", "comma-separated web origins (https://console.example.com) whose browsers may write; other cross-origin writes are refused"),
		flag("log-level", "info", "debug, info, warn or error"),
		boolFlag("cfgadm-context", true, "at start, add a context for this node (its API and admin token) to cfgadm's config file, as k3s writes its kubeconfig"),
		flag("rate-reads", "10000", "reads a second one token may make of this node (bursts of twice as many); over it: 429; -1: no limit"),
		flag("rate-writes", "1000", "writes a second one token may make of this node (bursts of twice as many); -1: no limit"),
		flag("auth-failure-rate", "10", "failed authentications a second one address may make (bursts of 100); -1: no limit"),
		boolFlag("public-metrics", false, "serve /metrics without a credential (by default it needs a token that may read)"),
		flag("flagd-sync-addr", "", "serve flagd's sync protocol (gRPC, flagd.sync.v1) here, for flagd and flagd's in-process providers (flagd's default port is 8015); off by default"),
		boolFlag("flagd-sync-anonymous", false, "serve every flag on --flagd-sync-addr without a token (flagd's providers cannot send one): bind it where only your services reach"),
		flag("log-format", "auto", "console (for people), json, or auto: console on a terminal, json otherwise"),
		flag("etcd-endpoints", "", "external mode: comma-separated client URLs of an etcd cluster to use instead of an embedded member"),
		flag("etcd-user", "", "external mode: etcd user (or user:password)"),
		flag("etcd-password", "", "external mode: etcd password"),
		flag("etcd-cacert", "", "external mode: CA bundle for https endpoints"),
		flag("etcd-cert", "", "external mode: client certificate"),
		flag("etcd-key", "", "external mode: client key"),
	}
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func run(c *cli.Context) error {
	var level zapcore.Level
	if err := level.Set(c.String("log-level")); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	format := c.String("log-format")
	switch format {
	case "auto":
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "console"
		}
	case "console", "json":
	default:
		return fmt.Errorf("--log-format: %q is not console, json or auto", format)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	if format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.Level = zap.NewAtomicLevelAt(level)
		zc.Development = false
		zc.DisableStacktrace = true
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		zc.EncoderConfig.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		if os.Getenv("NO_COLOR") != "" || !term.IsTerminal(int(os.Stderr.Fd())) {
			zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		}
	}
	log, err := zc.Build()
	if err != nil {
		return err
	}
	defer log.Sync()
	quota, err := strconv.ParseInt(c.String("quota-backend-bytes"), 10, 64)
	if err != nil || quota < 0 {
		return fmt.Errorf("--quota-backend-bytes: %q is not a number of bytes", c.String("quota-backend-bytes"))
	}
	retention, err := time.ParseDuration(c.String("audit-retention"))
	if err != nil || retention < 0 {
		return fmt.Errorf("--audit-retention: %q is not a duration such as 2160h", c.String("audit-retention"))
	}
	maxRecords, err := strconv.Atoi(c.String("audit-max-records"))
	if err != nil || maxRecords < 0 {
		return fmt.Errorf("--audit-max-records: %q is not a number of records", c.String("audit-max-records"))
	}
	limits := map[string]int{}
	for _, f := range []string{"rate-reads", "rate-writes", "auth-failure-rate"} {
		v, err := strconv.Atoi(c.String(f))
		if err != nil || v == 0 || v < -1 {
			return fmt.Errorf("--%s: %q is not a positive number (or -1: no limit)", f, c.String(f))
		}
		limits[f] = v
	}
	for _, f := range []string{"max-connections", "max-streams-per-client", "heartbeat-interval", "election-timeout"} {
		v, err := strconv.Atoi(c.String(f))
		if err != nil || v <= 0 {
			return fmt.Errorf("--%s: %q is not a positive number", f, c.String(f))
		}
		limits[f] = v
	}
	pruneEvery, err := time.ParseDuration(c.String("audit-prune-interval"))
	if err != nil || pruneEvery <= 0 {
		return fmt.Errorf("--audit-prune-interval: %q is not a duration such as 10m", c.String("audit-prune-interval"))
	}
	if retention == 0 && maxRecords == 0 {
		return fmt.Errorf("--audit-retention and --audit-max-records are both 0: the audit trail would grow until etcd is full; bound at least one")
	}
	if err := portsFree(c); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	onReady := func(n *node.Node) {
		if c.Bool("cfgadm-context") {
			// The same machine and user as cfgadm's: the README's commands
			// work with no setup. The token stays in the data dir (0600).
			abs := func(f string) string {
				if f == "" {
					return ""
				}
				a, _ := filepath.Abs(f)
				return a
			}
			ctx := clientconfig.Context{Name: c.String("name"), Endpoint: n.APIURL(), TokenFile: abs(n.AdminTokenFile()),
				CAFile: abs(c.String("trusted-ca-file"))}
			if c.Bool("client-cert-auth") {
				// The node's certificate is a client certificate too.
				ctx.CertFile, ctx.KeyFile = abs(c.String("cert-file")), abs(c.String("key-file"))
			}
			if err := clientconfig.AddContext(ctx); err != nil {
				log.Warn("could not add a context to cfgadm's config file", zap.String("file", clientconfig.Path()), zap.Error(err))
			} else {
				log.Info("cfgadm's config file has a context for this node", zap.String("file", clientconfig.Path()), zap.String("context", c.String("name")))
			}
		}
		if format == "console" {
			banner(c, n)
		}
	}
	return node.Run(ctx, node.Config{
		OnReady:                 onReady,
		PublicMetrics:           c.Bool("public-metrics"),
		FlagdSyncAddr:           c.String("flagd-sync-addr"),
		FlagdSyncAnonymous:      c.Bool("flagd-sync-anonymous"),
		CertFile:                c.String("cert-file"),
		KeyFile:                 c.String("key-file"),
		TrustedCAFile:           c.String("trusted-ca-file"),
		ClientCertAuth:          c.Bool("client-cert-auth"),
		PeerCertFile:            c.String("peer-cert-file"),
		PeerKeyFile:             c.String("peer-key-file"),
		PeerTrustedCAFile:       c.String("peer-trusted-ca-file"),
		PeerClientCertAuth:      c.Bool("peer-client-cert-auth"),
		RateReads:               limits["rate-reads"],
		RateWrites:              limits["rate-writes"],
		AuthFailureRate:         limits["auth-failure-rate"],
		Name:                    c.String("name"),
		DataDir:                 c.String("data-dir"),
		ListenClientURLs:        list(c.String("listen-client-urls")),
		ListenPeerURLs:          list(c.String("listen-peer-urls")),
		AdvertiseClientURLs:     list(c.String("advertise-client-urls")),
		InitialAdvertisePeerURL: list(c.String("initial-advertise-peer-urls")),
		InitialCluster:          c.String("initial-cluster"),
		InitialClusterState:     c.String("initial-cluster-state"),
		EtcdCredentialFile:      c.String("etcd-credential-file"),
		EncryptionKeyring:       c.String("encryption-keyring"),
		AutoCompactionRetention: c.String("auto-compaction-retention"),
		QuotaBackendBytes:       quota,
		APIAddr:                 c.String("api-addr"),
		SchemaFile:              c.String("schema"),
		Prefix:                  c.String("prefix"),
		AllowedOrigins:          list(c.String("allowed-origins")),
		AuditRetention:          kv.Retention{MaxAge: retention, MaxRecords: maxRecords},
		PruneEvery:              pruneEvery,
		MaxConnections:          limits["max-connections"],
		MaxStreamsPerClient:     limits["max-streams-per-client"],
		HeartbeatMs:             uint(limits["heartbeat-interval"]),
		ElectionMs:              uint(limits["election-timeout"]),
		EtcdEndpoints:           list(c.String("etcd-endpoints")),
		EtcdUser:                c.String("etcd-user"),
		EtcdPassword:            c.String("etcd-password"),
		EtcdCA:                  c.String("etcd-cacert"),
		EtcdCert:                c.String("etcd-cert"),
		EtcdKey:                 c.String("etcd-key"),
		Logger:                  log,
	})
}

// portsFree checks, before anything starts, that every address the node
// will listen on is free: a clash names the flag and the port, and what
// usually holds it, rather than surfacing from deep inside etcd.
func portsFree(c *cli.Context) error {
	addrs := map[string][]string{"api-addr": {c.String("api-addr")}}
	if a := c.String("flagd-sync-addr"); a != "" {
		addrs["flagd-sync-addr"] = []string{a}
	}
	if c.String("etcd-endpoints") == "" {
		for _, f := range []string{"listen-client-urls", "listen-peer-urls"} {
			for _, raw := range list(c.String(f)) {
				u, err := url.Parse(raw)
				if err != nil || u.Host == "" {
					return fmt.Errorf("--%s: %q is not a URL such as http://127.0.0.1:2379", f, raw)
				}
				addrs[f] = append(addrs[f], u.Host)
			}
		}
	}
	for _, f := range []string{"api-addr", "flagd-sync-addr", "listen-client-urls", "listen-peer-urls"} {
		for _, a := range addrs[f] {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				if errors.Is(err, syscall.EADDRINUSE) {
					return fmt.Errorf("--%s: %s is in use (another cfgnode or etcd? scripts/cluster.sh down stops a local cluster); stop it or give --%s another port", f, a, f)
				}
				return fmt.Errorf("--%s: cannot listen on %s: %v", f, a, err)
			}
			ln.Close()
		}
	}
	return nil
}

// banner tells a person at a terminal what to do next.
func banner(c *cli.Context, n *node.Node) {
	ep := n.APIURL()
	flag := ""
	if ep != "http://127.0.0.1:7380" {
		flag = " --endpoint " + ep
	}
	fmt.Fprintf(os.Stderr, `
cfgnode %q is ready.
  API:          %s
  etcd clients: %s
  data:         %s
Next, in another shell:
  go build -o bin/ ./cmd/... && export PATH=$PWD/bin:$PATH
  cfgadm%s list              # every key, with its value or default
  cfgadm%s set log.level warn
cfgadm presents this node's admin token (%s) through the
context %q in %s.
Stop with Ctrl-C: the data stays in %s for the next start.

`, c.String("name"), ep, strings.Join(n.ClientURLs(), ","), c.String("data-dir"), flag, flag, n.AdminTokenFile(), c.String("name"),
		clientconfig.Path(), c.String("data-dir"))
}

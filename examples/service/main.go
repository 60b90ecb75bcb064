package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/adapters"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/leases"
	"cfgcluster/schema"
	"cfgcluster/seal"
	"cfgcluster/watch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		endpoints = flag.String("etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
		service   = flag.String("service", "demo", "service name")
		id        = flag.String("id", "", "instance id (default host-pid)")
		addr      = flag.String("http-addr", "127.0.0.1:8080", "HTTP address")
		own       = flag.String("schema", "", "the service's own schema file (default: the cluster's)")
		snapshot  = flag.String("snapshot", "", "last-known snapshot file")
		ttl       = flag.Int("ttl", 10, "instance registration TTL, seconds")
		credFile  = flag.String("etcd-credential", "", "the service account's etcd credential file (cfgadm service-account create NAME --out FILE)")
		keyring   = flag.String("keyring", "", "the data keys that open this service's sensitive values (cfgadm keys export --prefix P --out FILE)")
		usage     = flag.Duration("flag-usage-interval", time.Minute, "how often the instance reports its feature flags' usage")
	)
	flag.Parse()
	log, _ := zap.NewProduction()
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cc := clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second,
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if *credFile != "" { // etcd refuses anonymous clients: log in as the service's account
		cred, err := auth.ReadEtcdCredential(*credFile)
		if err != nil {
			return err
		}
		cc = cred.Config(cc)
	}
	etcd, err := clientv3.New(cc)
	if err != nil {
		return err
	}
	defer etcd.Close()
	opts := []watch.Option{watch.WithLogger(log.Named("config")), watch.WithFlagUsageInterval(*usage)}
	if *own != "" {
		doc, err := os.ReadFile(*own)
		if err != nil {
			return err
		}
		sch, err := schema.Parse(doc)
		if err != nil {
			return err
		}
		opts = append(opts, watch.WithSchema(sch))
	}
	if *snapshot != "" {
		opts = append(opts, watch.WithSnapshotFile(*snapshot))
	}
	if *keyring != "" {
		ring, err := seal.ReadKeyring(*keyring)
		if err != nil {
			return err
		}
		opts = append(opts, watch.WithKeyring(ring))
	}
	cfg, err := watch.New(ctx, etcd, opts...)
	if err != nil {
		return err
	}
	defer cfg.Close()
	// Log every change this service applies: what, from what to what, who
	// made it and why (sensitive values are not logged).
	logChange := func(e watch.Event) {
		old, nv := any(schema.Encode(e.Old)), any(schema.Encode(e.New))
		if k, ok := cfg.Schema().Lookup(e.Key); ok && k.Sensitive {
			old, nv = "<redacted>", "<redacted>"
		}
		log.Info("configuration changed", zap.String("key", e.Key), zap.String("kind", string(e.Kind)),
			zap.Any("old", old), zap.Any("new", nv), zap.Int64("revision", e.Revision),
			zap.String("by", e.Actor), zap.String("comment", e.Comment), zap.Bool("requires_restart", e.RequiresRestart))
	}
	changes := cfg.Subscribe("*", watch.HandlerFuncs{PutFunc: logChange, UpdateFunc: logChange, DeleteFunc: logChange})
	defer cfg.Unsubscribe(changes)
	reg, err := adapters.Register(ctx, etcd, cfg, kv.Instance{Service: *service, ID: *id, Version: "example"},
		leases.WithTTL(*ttl), leases.WithRegistryLogger(log.Named("registry")))
	if err != nil {
		return err
	}
	defer reg.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			http.Error(w, "give ?key=NAME, such as /config?key=log.level", http.StatusBadRequest)
			return
		}
		v, err := cfg.Lookup(key)
		if err != nil {
			http.Error(w, err.Error(), cfgerr.HTTPStatus(cfgerr.CodeOf(err)))
			return
		}
		out := map[string]any{"key": v.Key, "value": schema.Encode(v.Value), "source": v.Source, "revision": v.Revision}
		if k, ok := cfg.Schema().Lookup(key); ok && k.Sensitive {
			// A secret is never shown; its fingerprint tells whether this
			// instance has the one expected.
			sum := sha256.Sum256([]byte(fmt.Sprint(v.Value)))
			out["value"], out["sha256"] = "<redacted>", hex.EncodeToString(sum[:])
		}
		json.NewEncoder(w).Encode(out)
	})
	// A feature flag, evaluated in-process for the caller named by
	// ?user= (its targeting key) and any other query parameters.
	mux.HandleFunc("/flag", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			http.Error(w, "give ?key=FLAG&user=ID, such as /flag?key=new-checkout&user=u1", http.StatusBadRequest)
			return
		}
		evalCtx := map[string]any{"targetingKey": r.URL.Query().Get("user")}
		for name, vs := range r.URL.Query() {
			if name != "key" && name != "user" {
				evalCtx[name] = vs[0]
			}
		}
		d := cfg.EvaluateFlag(r.Context(), key, evalCtx)
		json.NewEncoder(w).Encode(map[string]any{"key": key, "value": d.Value, "variant": d.Variant, "reason": d.Reason, "error": d.ErrorCode})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s serving\n", *service) })
	srv := &http.Server{Addr: *addr, Handler: adapters.Maintenance(cfg, *service, "/healthz", "/config", "/flag")(mux),
		ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving", zap.String("addr", *addr), zap.String("service", *service))
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

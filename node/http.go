package node

import (
	"cfgcluster/auth"
	"cfgcluster/version"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

// maxBody bounds a request body: a batch of values, each up to kv.MaxValueBytes.
const maxBody = 8 << 20

// maxHeaderBytes bounds a request's headers.
const maxHeaderBytes = 64 << 10

func (n *Node) serve() error {
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	n.ln = netutil.LimitListener(ln, n.cfg.MaxConnections)
	if n.cfg.CertFile != "" || n.cfg.KeyFile != "" {
		tc, err := n.tlsConfig()
		if err != nil {
			ln.Close()
			return err
		}
		n.ln = tls.NewListener(n.ln, tc)
	}
	n.srv = &http.Server{Handler: n.routes(), ErrorLog: zap.NewStdLog(n.log.Named("http")),
		ReadHeaderTimeout: n.cfg.ReadHeaderTimeout, ReadTimeout: n.cfg.ReadTimeout, IdleTimeout: n.cfg.IdleTimeout,
		MaxHeaderBytes: maxHeaderBytes}
	go func() {
		if err := n.srv.Serve(n.ln); !errors.Is(err, http.ErrServerClosed) {
			n.served <- err
		}
	}()
	return nil
}

// tlsConfig is the API's TLS: the node's certificate, and with
// ClientCertAuth, clients' certificates checked against TrustedCAFile.
func (n *Node) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(n.cfg.CertFile, n.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("--cert-file, --key-file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if n.cfg.ClientCertAuth {
		pem, err := os.ReadFile(n.cfg.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("--client-cert-auth needs --trusted-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--trusted-ca-file %s holds no PEM certificate", n.cfg.TrustedCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// routeTable is every route of the API with what it needs of its caller.
func (n *Node) routeTable() []route {
	return []route{
		{"GET /v1/keys", needs(auth.Read), n.listKeys},
		{"GET /v1/keys/{key}", onKey(auth.Read), n.getKey},
		{"PUT /v1/keys/{key}", onKey(auth.Write), n.setKey},
		{"DELETE /v1/keys/{key}", onKey(auth.Write), n.deleteKey},
		{"GET /v1/keys/{key}/history", onKey(auth.Read), n.history},
		{"GET /v1/keys/{key}/diff", onKey(auth.Read), n.diff},
		{"POST /v1/apply", needs(auth.Write), n.apply},       // and write on each key
		{"POST /v1/rollback", needs(auth.Write), n.rollback}, // and write on the key, or on every key
		{"GET /v1/schema", needs(auth.Read), n.getSchema},
		{"PUT /v1/schema", onEverything(auth.Admin), n.putSchema},
		{"POST /v1/schema/validate", needs(auth.Read), n.validateSchema},
		{"GET /v1/audit", needs(auth.Read), n.audit},       // what the caller may read
		{"GET /v1/watch", needs(auth.Read), n.watchStream}, // what the caller may read
		{"GET /v1/maintenance", needs(auth.Read), n.maintenanceList},
		{"POST /v1/maintenance", needs(auth.Operate), n.openMaintenance},
		{"GET /v1/maintenance/{scope}", needs(auth.Read), n.maintenanceStatus},
		{"POST /v1/maintenance/{scope}/extend", needs(auth.Operate), n.extendMaintenance},
		{"DELETE /v1/maintenance/{scope}", needs(auth.Operate), n.endMaintenance},
		{"DELETE /v1/maintenance/scheduled/{id}", needs(auth.Operate), n.cancelMaintenance},
		{"GET /v1/instances", needs(auth.Operate), n.instances},
		{"GET /v1/rollout/{revision}", needs(auth.Operate), n.rolloutStatus},
		{"GET /v1/cluster", needs(auth.Operate), n.getCluster},
		{"POST /v1/members", onEverything(auth.Admin), n.addMember},
		{"DELETE /v1/members/{member}", onEverything(auth.Admin), n.removeMember},
		{"POST /v1/defrag", onEverything(auth.Admin), n.defrag},
		{"GET /v1/snapshot", onEverything(auth.Admin), n.snapshot},
		{"GET /v1/version", authenticated, n.version},
		{"GET /v1/whoami", authenticated, n.whoami},
		{"GET /v1/tokens", onEverything(auth.Admin), n.listTokens},
		{"POST /v1/tokens", onEverything(auth.Admin), n.createToken},
		{"DELETE /v1/tokens/{name}", onEverything(auth.Admin), n.revokeToken},
		{"GET /v1/service-accounts", onEverything(auth.Admin), n.listServiceAccounts},
		{"POST /v1/service-accounts", onEverything(auth.Admin), n.createServiceAccount},
		{"DELETE /v1/service-accounts/{name}", onEverything(auth.Admin), n.deleteServiceAccount},
		{"GET /v1/proposals", needs(auth.Read), n.listProposals},        // those the caller may read
		{"GET /v1/proposals/{id}", needs(auth.Read), n.getProposal},     // and read on each key
		{"POST /v1/proposals/{id}/{decision}", authenticated, n.decide}, // approve on each key, or its author
		{"GET /v1/encryption-keys", onEverything(auth.Admin), n.encryptionKeys},
		{"POST /v1/encryption-keys", onEverything(auth.Admin), n.rotateKey},
		{"POST /v1/encryption-keys/export", onEverything(auth.Admin), n.exportKeys},
		{"POST /v1/encryption-keys/reencrypt", onEverything(auth.Admin), n.reencrypt},
		{"POST /v1/encryption-keys/rewrap", onEverything(auth.Admin), n.rewrap},
		{"DELETE /v1/encryption-keys/{id}", onEverything(auth.Admin), n.retireKey},
		{"GET /v1/roles", onEverything(auth.Admin), n.listRoles},
		{"POST /v1/roles", onEverything(auth.Admin), n.putRole},
		{"DELETE /v1/roles/{name}", onEverything(auth.Admin), n.deleteRole},
		{"POST /ofrep/v1/evaluate/flags/{key}", needs(auth.Read), n.ofrepEvaluate}, // and read on flags.KEY
		{"POST /ofrep/v1/evaluate/flags", needs(auth.Read), n.ofrepBulk},           // the flags the caller may read
		{"GET /ofrep/v1/events", needs(auth.Read), n.ofrepEvents},
		{"GET /v1/flags/usage", needs(auth.Read), n.flagUsage}, // the flags the caller may read
		{"GET /healthz", public, func(w http.ResponseWriter, r *http.Request) error {
			_, err := io.WriteString(w, "ok\n")
			return err
		}},
		{"GET /readyz", public, func(w http.ResponseWriter, r *http.Request) error {
			if err := n.ready(r.Context()); err != nil {
				return err
			}
			_, err := io.WriteString(w, "ok\n")
			return err
		}},
	}
}

func (n *Node) routes() http.Handler {
	m := newHTTPMetrics(n.reg)
	mux := http.NewServeMux()
	access := n.log.Named("access")
	for _, rt := range n.routeTable() {
		mux.Handle(rt.pattern, m.instrument(rt.pattern, n.errorHandler(rt.policy, access, rt.handler)))
	}
	metrics := promhttp.HandlerFor(prometheus.Gatherers{n.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
	metricsPolicy := needs(auth.Read)
	if n.cfg.PublicMetrics {
		metricsPolicy = public
	}
	mux.Handle("GET /metrics", n.errorHandler(metricsPolicy, access, func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	}))
	mux.Handle("/", m.instrument("other", n.errorHandler(authenticated, access, func(w http.ResponseWriter, r *http.Request) error {
		return cfgerr.Errorf(cfgerr.NotFound, "", "path", "no route %s %s", r.Method, r.URL.Path)
	})))
	return n.guard(mux)
}

// guard answers 503 for everything but /healthz once the node's member has
// stopped (see watchMember), and keeps a web page from writing through a
// browser that can reach the node: a request that is not GET, HEAD or OPTIONS must come from
// the same origin (or one of --allowed-origins), as the browser tells by
// Sec-Fetch-Site and Origin (net/http's CrossOriginProtection), and a POST or
// PUT must say its body is application/json — which a cross-site form can
// not send without a CORS preflight, which the node never grants.
func (n *Node) guard(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	for _, o := range n.cfg.AllowedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			n.log.Warn("ignoring an invalid --allowed-origins entry", zap.String("origin", o), zap.Error(err))
		}
	}
	refuse := func(w http.ResponseWriter, code cfgerr.Code, field, format string, args ...any) {
		writeJSON(w, cfgerr.HTTPStatus(code), api.ErrorOf(cfgerr.Errorf(code, "", field, format, args...)))
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, cfgerr.Forbidden, "origin", "cross-origin %s refused (origin %q); allow it with --allowed-origins", r.Method, r.Header.Get("Origin"))
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer says it comes from a cfgnode API, so a client that
		// reached some other server (an etcd client port) can say so.
		w.Header().Set(api.VersionHeader, version.API)
		if err := n.serving(); err != nil && r.URL.Path != "/healthz" {
			writeJSON(w, http.StatusServiceUnavailable, api.ErrorOf(err))
			return
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				refuse(w, cfgerr.Invalid, "Content-Type", "a %s needs Content-Type: application/json, not %q", r.Method, r.Header.Get("Content-Type"))
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
}

// errorHandler authorizes a request by its route's policy, runs the
// handler, writes its error as api.Error with its status code, and logs
// the request in the access log: who, what, the answer and how long it took.
func (n *Node) errorHandler(p policy, access *zap.Logger, h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		// Every answer has a write deadline: a client that does not read
		// cannot hold a handler. Streams move it per event; ?wait= adds its wait.
		wait, _ := waitParam(r)
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(n.cfg.WriteTimeout + wait))
		r, err := n.authorize(p, r)
		if err == nil {
			err = h(w, r)
		}
		if err != nil && n.refused != nil {
			n.refused.record(r, err)
		}
		defer func() {
			if p.public {
				return
			}
			status := http.StatusOK
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				status = sw.status
			}
			who := "-"
			if pr := principal(r); pr != nil {
				who = pr.Name
			}
			access.Info("request", zap.String("token", who), zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Int("status", status), zap.Duration("took", time.Since(start)), zap.String("from", r.RemoteAddr))
		}()
		if err == nil {
			return
		}
		if r.Context().Err() != nil {
			// The client went away (or the node is stopping): nobody reads
			// an answer, and it is not the node's error.
			n.log.Debug("request abandoned by its client", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
			return
		}
		if sw, ok := w.(*statusWriter); ok && sw.started() {
			// The answer is under way: a second header cannot be sent.
			n.log.Debug("request failed after its answer started", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
			return
		}
		code := cfgerr.CodeOf(err)
		if code == cfgerr.TooMany {
			w.Header().Set("Retry-After", "1")
		}
		if code == cfgerr.Internal {
			n.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		}
		writeJSON(w, cfgerr.HTTPStatus(code), api.ErrorOf(err))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body strictly: unknown fields and trailing data are errors.
func decode(r *http.Request, v any) error {
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return cfgerr.Errorf(cfgerr.Invalid, "", "body", "request body is over %d bytes", tooBig.Limit)
		}
		return cfgerr.Errorf(cfgerr.Invalid, "", "body", "malformed JSON: %v", err)
	}
	var extra json.RawMessage
	if err := d.Decode(&extra); err != io.EOF {
		return cfgerr.Errorf(cfgerr.Invalid, "", "body", "malformed JSON: trailing data after the object")
	}
	return nil
}

func intParam(r *http.Request, name string) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, cfgerr.Errorf(cfgerr.Invalid, "", name, "%q is not a revision number", s)
	}
	return v, nil
}

func (n *Node) getKey(w http.ResponseWriter, r *http.Request) error {
	rev, err := intParam(r, "revision")
	if err != nil {
		return err
	}
	if r.URL.Query().Get("reveal") == "true" {
		return n.revealKey(w, r, rev)
	}
	if rev == 0 && r.URL.Query().Get("consistency") != "linearizable" {
		// The current value, from the node's cache: no etcd round trip.
		// It may lag a write made through another node by milliseconds;
		// ?consistency=linearizable reads through etcd's quorum instead.
		v, err := n.watch.Lookup(r.PathValue("key"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, cachedValue(n.watch.Schema(), v))
	}
	e, err := n.store.Get(r.Context(), r.PathValue("key"), rev)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wireValue(n.watch.Schema(), e))
}

// revealKey answers a sensitive value in clear to a caller with
// read-sensitive on the key, once the read is in the audit trail (no
// record, no value).
func (n *Node) revealKey(w http.ResponseWriter, r *http.Request, rev int64) error {
	key := r.PathValue("key")
	if !principal(r).Can(auth.ReadSensitive, key) {
		return cfgerr.Errorf(cfgerr.Forbidden, key, "", "revealing a sensitive value needs %s on the key", auth.ReadSensitive)
	}
	e, err := n.store.Get(r.Context(), key, rev)
	if err != nil {
		return err
	}
	v := wireValue(n.watch.Schema(), e)
	if e.Sensitive && e.Source == kv.SourceCluster {
		if err := n.store.AuditRead(r.Context(), kv.Meta{Actor: actor(r), Comment: r.URL.Query().Get("comment")}, key, e.Revision); err != nil {
			return err
		}
		v.Value = schema.Encode(e.Value)
	}
	return writeJSON(w, http.StatusOK, v)
}

func (n *Node) listKeys(w http.ResponseWriter, r *http.Request) error {
	rev, err := intParam(r, "revision")
	if err != nil {
		return err
	}
	es, err := n.store.List(r.Context(), r.URL.Query().Get("prefix"), rev)
	if err != nil {
		return err
	}
	sch := n.watch.Schema()
	out := api.ValueList{Values: make([]api.Value, 0, len(es))}
	for _, e := range es {
		if mayRead(r, e.Key) {
			out.Values = append(out.Values, *wireValue(sch, e))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) setKey(w http.ResponseWriter, r *http.Request) error {
	var req api.SetRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	key := r.PathValue("key")
	if (req.Value == nil) == (req.Text == nil) {
		return cfgerr.Errorf(cfgerr.Invalid, key, "value", "give exactly one of value (typed JSON) and text")
	}
	return n.write(w, r, kv.Meta{Action: kv.ActionSet, Comment: req.Comment}, req.WriteOptions,
		[]kv.Write{{Key: key, Value: req.Value, Text: req.Text, ExpectRevision: req.ExpectRevision}})
}

func (n *Node) deleteKey(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	return n.write(w, r, kv.Meta{Action: kv.ActionDelete, Comment: q.Get("comment")},
		api.WriteOptions{NoPropose: q.Get("no_propose") == "true", Force: q.Get("force") == "true"},
		[]kv.Write{{Key: r.PathValue("key"), Delete: true}})
}

func (n *Node) apply(w http.ResponseWriter, r *http.Request) error {
	var req api.ApplyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Changes) == 0 {
		return cfgerr.Errorf(cfgerr.Invalid, "", "changes", "the batch has no changes")
	}
	writes := make([]kv.Write, len(req.Changes))
	for i, c := range req.Changes {
		given := 0
		for _, g := range []bool{c.Value != nil, c.Text != nil, c.Delete} {
			if g {
				given++
			}
		}
		if given != 1 {
			return cfgerr.Errorf(cfgerr.Invalid, c.Key, "value", "changes[%d]: give exactly one of value, text and delete", i)
		}
		writes[i] = kv.Write{Key: c.Key, Value: c.Value, Text: c.Text, Delete: c.Delete, ExpectRevision: c.ExpectRevision}
	}
	return n.write(w, r, kv.Meta{Action: kv.ActionApply, Comment: req.Comment, DryRun: req.DryRun}, req.WriteOptions, writes)
}

func (n *Node) write(w http.ResponseWriter, r *http.Request, meta kv.Meta, opt api.WriteOptions, writes []kv.Write) error {
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	keys := make([]string, len(writes))
	for i, w := range writes {
		keys[i] = w.Key
	}
	if err := allow(r, auth.Write, keys...); err != nil {
		return err
	}
	if err := writeOptions(r, &meta, opt, keys...); err != nil {
		return err
	}
	meta.Actor = actor(r)
	res, err := n.store.Apply(r.Context(), meta, writes)
	if err != nil {
		return err
	}
	if res.Proposal != nil {
		return n.answerWrite(w, r, res, wireResult(res))
	}
	n.awaitApplied(r.Context(), res)
	out := wireResult(res)
	if wait > 0 && !res.DryRun && res.Revision != 0 {
		if out.Rollout, err = n.waitRollout(r.Context(), res, wait); err != nil {
			return err
		}
	}
	return n.answerWrite(w, r, res, out)
}

// awaitApplied waits (briefly) until the node's cache holds a write, so a
// read from this node right after a write sees it.
func (n *Node) awaitApplied(ctx context.Context, res *kv.Result) {
	if res.Revision == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.watch.WaitRevision(ctx, res.Revision); err != nil {
		n.log.Warn("write acknowledged before this node's cache applied it", zap.Int64("revision", res.Revision), zap.Error(err))
	}
}

func (n *Node) history(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	limit, err := intParam(r, "limit")
	if err != nil {
		return err
	}
	hs, err := n.store.History(r.Context(), key, int(limit))
	if err != nil {
		return err
	}
	sch := n.watch.Schema()
	out := api.History{Key: key, Entries: make([]api.HistoryEntry, 0, len(hs))}
	for _, h := range hs {
		e := api.HistoryEntry{Revision: h.Revision, Value: wireAny(sch, key, h.Value), Deleted: h.Deleted,
			Redacted: h.Redacted || (h.Sensitive || sensitive(sch, key)) && !h.Deleted,
			Actor:    h.Actor, Time: h.Time, Action: h.Action, Comment: h.Comment, Source: h.Source}
		if e.Redacted {
			e.Value = api.Redacted
		}
		out.Entries = append(out.Entries, e)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) diff(w http.ResponseWriter, r *http.Request) error {
	from, err := intParam(r, "from")
	if err != nil {
		return err
	}
	to, err := intParam(r, "to")
	if err != nil {
		return err
	}
	d, err := n.store.Diff(r.Context(), r.PathValue("key"), from, to)
	if err != nil {
		return err
	}
	sch := n.watch.Schema()
	out := api.Diff{Key: d.Key, From: from, To: to, Changed: d.Changed}
	if d.From != nil {
		out.Old = wireValue(sch, d.From)
	}
	if d.To != nil {
		out.New = wireValue(sch, d.To)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) rollback(w http.ResponseWriter, r *http.Request) error {
	var req api.RollbackRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	meta := kv.Meta{Actor: actor(r), Comment: req.Comment}
	if err := allow(r, auth.Write, req.Key); err != nil { // "" (all): every key
		return err
	}
	if err := writeOptions(r, &meta, req.WriteOptions, req.Key); err != nil {
		return err
	}
	var (
		res *kv.Result
		err error
	)
	switch {
	case req.All == (req.Key != ""):
		return cfgerr.Errorf(cfgerr.Invalid, req.Key, "key", "give either a key or all")
	case req.All:
		res, err = n.store.RollbackAll(r.Context(), meta, req.To)
	default:
		res, err = n.store.Rollback(r.Context(), meta, req.Key, req.To)
	}
	if err != nil {
		return err
	}
	n.awaitApplied(r.Context(), res)
	return n.answerWrite(w, r, res, wireResult(res))
}

func (n *Node) getSchema(w http.ResponseWriter, r *http.Request) error {
	_, doc, rev, err := n.store.Schema(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Schema{Revision: rev, Document: string(doc)})
}

func (n *Node) putSchema(w http.ResponseWriter, r *http.Request) error {
	var req api.SchemaRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	meta := kv.Meta{Actor: actor(r), Comment: req.Comment}
	if err := writeOptions(r, &meta, req.WriteOptions); err != nil {
		return err
	}
	res, err := n.store.SetSchema(r.Context(), meta, []byte(req.Document))
	if err != nil {
		return err
	}
	n.awaitApplied(r.Context(), res)
	return n.answerWrite(w, r, res, wireResult(res))
}

func (n *Node) validateSchema(w http.ResponseWriter, r *http.Request) error {
	var req api.SchemaRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	_, err := n.store.SetSchema(r.Context(), kv.Meta{Actor: actor(r), DryRun: true}, []byte(req.Document))
	if err != nil && cfgerr.CodeOf(err) != cfgerr.Invalid {
		return err
	}
	out := api.Validation{Valid: err == nil}
	for _, e := range cfgerr.All(err) {
		out.Problems = append(out.Problems, api.ErrorOf(e))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) audit(w http.ResponseWriter, r *http.Request) error {
	before, err := intParam(r, "before")
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit")
	if err != nil {
		return err
	}
	recs, err := n.store.Audit(r.Context(), kv.AuditQuery{Key: r.URL.Query().Get("key"), Before: before, Limit: int(limit)})
	if err != nil {
		return err
	}
	out := api.AuditList{Records: make([]api.AuditRecord, 0, len(recs))}
	who := principal(r)
	for _, rec := range recs {
		// Only the changes the caller may read: values by key, windows with
		// read, tokens and roles with admin on everything.
		var shown []kv.Change
		for _, c := range rec.Changes {
			switch {
			case strings.HasPrefix(c.Key, "auth/"):
				if who.Can(auth.Admin, "") {
					shown = append(shown, c)
				}
			case strings.HasPrefix(c.Key, "maintenance/"):
				shown = append(shown, c)
			case who.Can(auth.Read, c.Key):
				shown = append(shown, c)
			}
		}
		if rec.Action == ActionRefused && !who.Can(auth.Admin, "") {
			continue // who was refused what: for admins
		}
		if len(shown) == 0 && !rec.AboutSchema() && rec.Action != ActionRefused {
			continue
		}
		out.Records = append(out.Records, api.AuditRecord{ID: rec.ID, Revision: rec.Revision, Time: rec.Time,
			Actor: rec.Actor, Action: rec.Action, Comment: rec.Comment, Changes: wireChanges(shown),
			SchemaChanged: rec.SchemaChanged, SchemaRevision: rec.SchemaRevision,
			Proposal: rec.Proposal, Approvers: rec.Approvers, Forced: rec.Forced})
	}
	return writeJSON(w, http.StatusOK, out)
}

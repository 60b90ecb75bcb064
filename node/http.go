package node

import (
	"cfgcluster/version"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
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

func (n *Node) routes() http.Handler {
	m := newHTTPMetrics(n.reg)
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.Handle(pattern, m.instrument(pattern, n.errorHandler(h)))
	}
	handle("GET /v1/keys", n.listKeys)
	handle("GET /v1/keys/{key}", n.getKey)
	handle("PUT /v1/keys/{key}", n.setKey)
	handle("DELETE /v1/keys/{key}", n.deleteKey)
	handle("GET /v1/keys/{key}/history", n.history)
	handle("GET /v1/keys/{key}/diff", n.diff)
	handle("POST /v1/apply", n.apply)
	handle("POST /v1/rollback", n.rollback)
	handle("GET /v1/schema", n.getSchema)
	handle("PUT /v1/schema", n.putSchema)
	handle("POST /v1/schema/validate", n.validateSchema)
	handle("GET /v1/audit", n.audit)
	handle("GET /v1/watch", n.watchStream)
	handle("GET /v1/maintenance", n.maintenanceList)
	handle("POST /v1/maintenance", n.openMaintenance)
	handle("GET /v1/maintenance/{scope}", n.maintenanceStatus)
	handle("POST /v1/maintenance/{scope}/extend", n.extendMaintenance)
	handle("DELETE /v1/maintenance/{scope}", n.endMaintenance)
	handle("DELETE /v1/maintenance/scheduled/{id}", n.cancelMaintenance)
	handle("GET /v1/instances", n.instances)
	handle("GET /v1/rollout/{revision}", n.rolloutStatus)
	handle("GET /v1/cluster", n.getCluster)
	handle("POST /v1/members", n.addMember)
	handle("DELETE /v1/members/{member}", n.removeMember)
	handle("POST /v1/defrag", n.defrag)
	handle("GET /v1/snapshot", n.snapshot)
	handle("GET /v1/version", n.version)
	handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.WriteString(w, "ok\n")
		return err
	})
	handle("GET /readyz", func(w http.ResponseWriter, r *http.Request) error {
		if err := n.ready(r.Context()); err != nil {
			return err
		}
		_, err := io.WriteString(w, "ok\n")
		return err
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{n.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{}))
	mux.Handle("/", m.instrument("other", n.errorHandler(func(w http.ResponseWriter, r *http.Request) error {
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

// errorHandler writes a handler's error as api.Error with its status code.
func (n *Node) errorHandler(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		// Every answer has a write deadline: a client that does not read
		// cannot hold a handler. Streams move it per event; ?wait= adds its wait.
		wait, _ := waitParam(r)
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(n.cfg.WriteTimeout + wait))
		err := h(w, r)
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

func actor(r *http.Request) string {
	if a := r.Header.Get(api.ActorHeader); a != "" {
		return a
	}
	return "anonymous"
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
		out.Values = append(out.Values, *wireValue(sch, e))
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
	return n.write(w, r, kv.Meta{Action: kv.ActionSet, Comment: req.Comment},
		[]kv.Write{{Key: key, Value: req.Value, Text: req.Text, ExpectRevision: req.ExpectRevision}})
}

func (n *Node) deleteKey(w http.ResponseWriter, r *http.Request) error {
	return n.write(w, r, kv.Meta{Action: kv.ActionDelete, Comment: r.URL.Query().Get("comment")},
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
	return n.write(w, r, kv.Meta{Action: kv.ActionApply, Comment: req.Comment, DryRun: req.DryRun}, writes)
}

func (n *Node) write(w http.ResponseWriter, r *http.Request, meta kv.Meta, writes []kv.Write) error {
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	meta.Actor = actor(r)
	res, err := n.store.Apply(r.Context(), meta, writes)
	if err != nil {
		return err
	}
	n.awaitApplied(r.Context(), res)
	out := wireResult(res)
	if wait > 0 && !res.DryRun && res.Revision != 0 {
		if out.Rollout, err = n.waitRollout(r.Context(), res, wait); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, out)
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
	return writeJSON(w, http.StatusOK, wireResult(res))
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
	res, err := n.store.SetSchema(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment}, []byte(req.Document))
	if err != nil {
		return err
	}
	n.awaitApplied(r.Context(), res)
	return writeJSON(w, http.StatusOK, wireResult(res))
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
	for _, rec := range recs {
		out.Records = append(out.Records, api.AuditRecord{ID: rec.ID, Revision: rec.Revision, Time: rec.Time,
			Actor: rec.Actor, Action: rec.Action, Comment: rec.Comment, Changes: wireChanges(rec.Changes),
			SchemaChanged: rec.SchemaChanged, SchemaRevision: rec.SchemaRevision})
	}
	return writeJSON(w, http.StatusOK, out)
}

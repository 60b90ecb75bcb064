package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/flags"
	"cfgcluster/leases"
	"cfgcluster/schema"
	"cfgcluster/watch"
)

// OFREP, the OpenFeature Remote Evaluation Protocol (0.3.0): any
// OpenFeature SDK with an OFREP provider evaluates the cluster's flags
// through a node, which evaluates them from its own watch client's memory.
// A caller sees the flags it may read (read on flags.KEY).

// ofrepOf is an evaluation as OFREP writes it.
func ofrepOf(key string, d flags.Detail) api.FlagEvaluation {
	res := api.FlagEvaluation{Key: key, Metadata: d.Metadata}
	if d.ErrorCode != "" {
		res.ErrorCode, res.ErrorDetails = string(d.ErrorCode), d.ErrorMessage
		return res
	}
	res.Reason, res.Variant = string(d.Reason), d.Variant
	if d.Value != nil {
		res.Value, _ = json.Marshal(d.Value)
	}
	return res
}

// ofrepContext reads an evaluation request; a bad one is OFREP's 400
// INVALID_CONTEXT.
func ofrepContext(w http.ResponseWriter, r *http.Request, key string) (map[string]any, bool) {
	var req api.FlagEvaluationRequest
	body, err := io.ReadAll(r.Body)
	if err == nil {
		d := json.NewDecoder(bytes.NewReader(body))
		err = d.Decode(&req)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, api.FlagEvaluation{Key: key, ErrorCode: string(flags.InvalidContext),
			ErrorDetails: "the body is not an evaluation request, {\"context\": {...}}: " + jsonProblem(err)})
		return nil, false
	}
	if req.Context == nil {
		req.Context = map[string]any{}
	}
	return req.Context, true
}

// jsonProblem says what is wrong with a JSON body without quoting it.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s is a JSON %s, where %s belongs", typ.Field, typ.Value, typ.Type)
	case errors.As(err, &tooBig):
		return fmt.Sprintf("the body is over %d bytes", tooBig.Limit)
	}
	return "malformed JSON"
}

// ofrepEvaluate is POST /ofrep/v1/evaluate/flags/{key}.
func (n *Node) ofrepEvaluate(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("key")
	if err := flags.ValidKey(key); err != nil {
		return writeJSON(w, http.StatusNotFound, api.FlagEvaluation{Key: key, ErrorCode: string(flags.FlagNotFound), ErrorDetails: err.Error()})
	}
	if err := allow(r, auth.Read, schema.FlagsNamespace+"."+key); err != nil {
		return err
	}
	ctx, ok := ofrepContext(w, r, key)
	if !ok {
		return nil
	}
	res := ofrepOf(key, n.watch.EvaluateFlag(r.Context(), key, ctx))
	switch res.ErrorCode {
	case "":
		return writeJSON(w, http.StatusOK, res)
	case string(flags.FlagNotFound):
		return writeJSON(w, http.StatusNotFound, res)
	}
	return writeJSON(w, http.StatusBadRequest, res)
}

// ofrepBulk is POST /ofrep/v1/evaluate/flags: every flag the caller may
// read, with an ETag of the answer (If-None-Match: 304 while it is the
// same) and the event stream that says when to ask again.
func (n *Node) ofrepBulk(w http.ResponseWriter, r *http.Request) error {
	ctx, ok := ofrepContext(w, r, "")
	if !ok {
		return nil
	}
	set := n.watch.Flags()
	out := struct {
		Flags        []api.FlagEvaluation `json:"flags"`
		Metadata     map[string]any       `json:"metadata,omitempty"`
		EventStreams []map[string]any     `json:"eventStreams"`
	}{Flags: []api.FlagEvaluation{}, Metadata: set.Metadata}
	for _, key := range slices.Sorted(maps.Keys(set.Flags)) {
		if mayRead(r, schema.FlagsNamespace+"."+key) {
			out.Flags = append(out.Flags, ofrepOf(key, set.Flags[key].Evaluate(ctx)))
		}
	}
	out.EventStreams = []map[string]any{{"type": "sse", "endpoint": map[string]any{"requestUri": "/ofrep/v1/events"}}}
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(append(body, '\n'))
	return err
}

// flagChanges signals a channel on every change of the flags.
type flagChanges chan struct{}

func (c flagChanges) OnPut(watch.Event)    { c.signal() }
func (c flagChanges) OnUpdate(watch.Event) { c.signal() }
func (c flagChanges) OnDelete(watch.Event) { c.signal() }
func (c flagChanges) signal() {
	select {
	case c <- struct{}{}:
	default: // one pending signal stands for any number of changes
	}
}

// ofrepEvents is GET /ofrep/v1/events, the bulk answer's event stream
// (OFREP ADR-0008): a refetchEvaluation message whenever a flag (or what
// the flags share) changes, and a comment every keepalive to keep it open.
func (n *Node) ofrepEvents(w http.ResponseWriter, r *http.Request) error {
	ew, release, err := n.openStream(w, r)
	if err != nil {
		return err
	}
	defer release()
	changes := make(flagChanges, 1)
	for _, pattern := range []string{schema.FlagsNamespace, schema.FlagsNamespace + ".*"} {
		sub := n.watch.Subscribe(pattern, changes)
		defer n.watch.Unsubscribe(sub)
	}
	startEvents(w)
	if _, err := io.WriteString(ew, ": cfgcluster flags\n\n"); err != nil {
		return nil
	}
	if ew.flush() != nil {
		return nil
	}
	beat := time.NewTicker(keepalive)
	defer beat.Stop()
	for {
		var msg string
		select {
		case <-r.Context().Done():
			return nil
		case <-n.done:
			return nil
		case <-beat.C:
			msg = ": keep-alive\n\n"
		case <-changes:
			msg = fmt.Sprintf("event: message\ndata: {\"type\":\"refetchEvaluation\",\"lastModified\":%d}\n\n", time.Now().Unix())
		}
		if _, err := io.WriteString(ew, msg); err != nil || ew.flush() != nil {
			return nil
		}
	}
}

// flagUsage is GET /v1/flags/usage: each flag the caller may read, with
// its evaluations summed over the live instances' reports.
func (n *Node) flagUsage(w http.ResponseWriter, r *http.Request) error {
	ins, _, err := leases.Instances(r.Context(), n.client, n.store.Layout(), "")
	if err != nil {
		return err
	}
	set := n.watch.Flags()
	out := api.FlagUsageList{Flags: []api.FlagUsage{}}
	for _, key := range slices.Sorted(maps.Keys(set.Flags)) {
		if !mayRead(r, schema.FlagsNamespace+"."+key) {
			continue
		}
		u := api.FlagUsage{Flag: key, Evaluations: map[string]uint64{}}
		for _, in := range ins {
			fu, ok := in.Report.Flags[key]
			if !ok {
				continue
			}
			u.Instances++
			for variant, count := range fu.Evaluations {
				u.Evaluations[variant] += count
			}
			if last := fu.Last; !last.IsZero() && (u.Last == nil || last.After(*u.Last)) {
				u.Last = &last
			}
		}
		out.Flags = append(out.Flags, u)
	}
	return writeJSON(w, http.StatusOK, out)
}

package node

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// ActionRefused marks an audit record of a request refused for want of a
// credential (401) or a right (403): who asked, for what, and why not.
const ActionRefused = "refused"

// refusal is one refused request, queued for the audit trail.
type refusal struct {
	who, what, why string
	at             time.Time
}

// refusals writes refused requests to the audit trail off the request's
// path: a full queue drops (and counts) rather than slow the answers, since
// a brute force is bounded by the failure rate, not by etcd.
type refusals struct {
	ch      chan refusal
	dropped prometheus.Counter
}

func newRefusals(reg prometheus.Registerer) *refusals {
	r := &refusals{ch: make(chan refusal, 1024), dropped: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cfgcluster_refusals_dropped_total", Help: "Refused requests not recorded in the audit trail: its queue was full."})}
	reg.MustRegister(r.dropped)
	return r
}

// record queues a refused request, if err is a refusal.
func (r *refusals) record(req *http.Request, err error) {
	code := cfgerr.CodeOf(err)
	if code != cfgerr.Unauthenticated && code != cfgerr.Forbidden {
		return
	}
	who := "unauthenticated from " + source(req)
	if p := principal(req); p != nil {
		who = p.Subject + " (token " + p.Name + ")"
	}
	select {
	case r.ch <- refusal{who: who, what: req.Method + " " + req.URL.Path, why: fmt.Sprintf("%d %s", cfgerr.HTTPStatus(code), err), at: time.Now()}:
	default:
		r.dropped.Inc()
	}
}

// writeRefusals records queued refusals until ctx ends: one audit record
// each, with no change, action "refused".
func (n *Node) writeRefusals(ctx context.Context) {
	defer n.bg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-n.refused.ch:
			meta := kv.Meta{Actor: r.who, Action: ActionRefused, Comment: r.what + ": " + r.why}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := n.client.Txn(wctx).Then(n.store.AuditOp(meta, nil)...).Commit(); err != nil && ctx.Err() == nil {
				n.log.Warn("could not record a refused request in the audit trail", zap.String("request", r.what), zap.Error(err))
			}
			cancel()
		}
	}
}

package node

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/leases"
)

func wireWindow(w *kv.Window) *api.Window {
	if w == nil {
		return nil
	}
	return &api.Window{ID: w.ID, Scope: w.Scope, Reason: w.Reason, Author: w.Author, Start: w.Start, End: w.End}
}

func parseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, cfgerr.Errorf(cfgerr.Invalid, "", field, "%q is not a duration such as 30m or 2h", s)
	}
	return d, nil
}

func (n *Node) openMaintenance(w http.ResponseWriter, r *http.Request) error {
	var req api.MaintenanceRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := parseDuration("duration", req.Duration)
	if err != nil {
		return err
	}
	var win *kv.Window
	if req.At != nil {
		win, err = n.maint.Schedule(r.Context(), req.Scope, req.Reason, actor(r), *req.At, d)
	} else {
		win, err = n.maint.Enable(r.Context(), req.Scope, req.Reason, actor(r), d)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wireWindow(win))
}

func (n *Node) extendMaintenance(w http.ResponseWriter, r *http.Request) error {
	var req api.ExtendRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := parseDuration("duration", req.Duration)
	if err != nil {
		return err
	}
	win, err := n.maint.Extend(r.Context(), r.PathValue("scope"), actor(r), d)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wireWindow(win))
}

func (n *Node) endMaintenance(w http.ResponseWriter, r *http.Request) error {
	win, err := n.maint.End(r.Context(), r.PathValue("scope"), actor(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wireWindow(win))
}

func (n *Node) cancelMaintenance(w http.ResponseWriter, r *http.Request) error {
	if err := n.maint.Cancel(r.Context(), r.PathValue("id"), actor(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (n *Node) maintenanceStatus(w http.ResponseWriter, r *http.Request) error {
	scope := r.PathValue("scope")
	win, open, err := n.maint.Status(r.Context(), scope)
	if err != nil {
		return err
	}
	out := api.MaintenanceStatus{Scope: scope, Open: open}
	if open {
		out.Window = wireWindow(win)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) maintenanceList(w http.ResponseWriter, r *http.Request) error {
	open, sched, err := n.maint.List(r.Context())
	if err != nil {
		return err
	}
	out := api.MaintenanceList{Open: []api.Window{}, Scheduled: []api.Window{}}
	for _, x := range open {
		out.Open = append(out.Open, *wireWindow(x))
	}
	for _, x := range sched {
		out.Scheduled = append(out.Scheduled, *wireWindow(x))
	}
	return writeJSON(w, http.StatusOK, out)
}

// wireInstance shows an instance; its lag is how far its last applied
// change is behind last, the last change the node applied.
func wireInstance(in *kv.Instance, last int64) api.Instance {
	out := api.Instance{Service: in.Service, ID: in.ID, Host: in.Host, Version: in.Version, Labels: in.Labels,
		Started: in.Started, Reported: in.Reported, Applied: in.Applied, Lag: max(last-in.Applied, 0),
		Pending: in.Pending, Reads: in.Reads}
	for _, j := range in.Rejected {
		out.Rejected = append(out.Rejected, api.Rejection{Key: j.Key, Revision: j.Revision, Reason: j.Reason})
	}
	return out
}

func (n *Node) instances(w http.ResponseWriter, r *http.Request) error {
	ins, _, err := leases.Instances(r.Context(), n.client, n.store.Layout(), r.URL.Query().Get("service"))
	if err != nil {
		return err
	}
	out := api.InstanceList{Revision: n.watch.Revision(), Instances: []api.Instance{}}
	last := n.watch.LastChange()
	for _, in := range ins {
		out.Instances = append(out.Instances, wireInstance(in, last))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) rolloutStatus(w http.ResponseWriter, r *http.Request) error {
	rev, err := strconv.ParseInt(r.PathValue("revision"), 10, 64)
	if err != nil || rev <= 0 {
		return cfgerr.Errorf(cfgerr.Invalid, "", "revision", "%q is not a revision", r.PathValue("revision"))
	}
	recs, err := n.store.Audit(r.Context(), kv.AuditQuery{Before: rev + 1, Limit: 1})
	if err != nil {
		return err
	}
	if len(recs) == 0 || recs[0].Revision != rev {
		return cfgerr.Errorf(cfgerr.NotFound, "", "revision", "no change was made at revision %d", rev)
	}
	var keys []string
	for _, c := range recs[0].Changes {
		keys = append(keys, c.Key)
	}
	ro, err := n.rollout(r.Context(), rev, keys)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ro)
}

// rollout sorts the live instances that read any of keys by whether they
// have applied rev.
func (n *Node) rollout(ctx context.Context, rev int64, keys []string) (*api.Rollout, error) {
	ins, _, err := leases.Instances(ctx, n.client, n.store.Layout(), "")
	if err != nil {
		return nil, err
	}
	cur := n.watch.LastChange()
	ro := &api.Rollout{Revision: rev, Keys: keys, Applied: []api.Instance{}, Stragglers: []api.Instance{}, Rejected: []api.Instance{}}
	for _, in := range ins {
		reads := false
		for _, k := range keys {
			reads = reads || in.ReadsKey(k)
		}
		if !reads {
			continue
		}
		wi := wireInstance(in, cur)
		rejected := false
		for _, j := range in.Rejected {
			for _, k := range keys {
				rejected = rejected || j.Key == k && j.Revision >= rev
			}
		}
		switch {
		case rejected:
			ro.Rejected = append(ro.Rejected, wi)
		case in.Applied >= rev:
			ro.Applied = append(ro.Applied, wi)
		default:
			ro.Stragglers = append(ro.Stragglers, wi)
		}
	}
	for _, l := range [][]api.Instance{ro.Applied, ro.Stragglers, ro.Rejected} {
		sort.Slice(l, func(i, j int) bool { return l[i].Service+"/"+l[i].ID < l[j].Service+"/"+l[j].ID })
	}
	ro.Converged = len(ro.Stragglers) == 0 && len(ro.Rejected) == 0
	return ro, nil
}

// waitRollout polls the registry until every live instance that reads the
// changed keys has applied the write, or wait passes: then it answers the
// last rollout it read. Every read honours the deadline, so an unreachable
// etcd cannot hold the request past it.
func (n *Node) waitRollout(ctx context.Context, res *kv.Result, wait time.Duration) (*api.Rollout, error) {
	keys := make([]string, 0, len(res.Changes))
	for _, c := range res.Changes {
		keys = append(keys, c.Key)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last *api.Rollout
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		ro, err := n.rollout(pctx, res.Revision, keys)
		pcancel()
		switch {
		case err == nil && (ro.Converged || len(ro.Stragglers) == 0):
			return ro, nil
		case err == nil:
			last = ro
		case cfgerr.CodeOf(err) != cfgerr.Unavailable:
			return nil, err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, cfgerr.Errorf(cfgerr.Unavailable, "", "wait", "the change was written (revision %d), but the instance registry could not be read within %v", res.Revision, wait)
			}
			return last, nil
		case <-t.C:
		}
	}
}

// waitParam reads ?wait=DURATION (0 when absent).
func waitParam(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("wait")
	if s == "" {
		return 0, nil
	}
	d, err := parseDuration("wait", s)
	if err == nil && d > 10*time.Minute {
		return 0, cfgerr.Errorf(cfgerr.Invalid, "", "wait", "wait at most 10m")
	}
	return d, err
}

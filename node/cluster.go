package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/version"
)

func memberID(id uint64) string { return strconv.FormatUint(id, 16) }

// clusterStatus asks every member for its status, each with a short timeout.
func (n *Node) clusterStatus(ctx context.Context) (*api.ClusterStatus, error) {
	ml, err := n.client.MemberList(ctx)
	if err != nil {
		return nil, cfgerr.Wrap(cfgerr.Unavailable, err)
	}
	out := &api.ClusterStatus{}
	for _, m := range ml.Members {
		am := api.Member{ID: memberID(m.ID), Name: n.memberName(ctx, m.ID, m.Name), PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner}
		if len(m.ClientURLs) == 0 {
			am.Error = "not started yet"
		} else {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := n.client.Status(sctx, m.ClientURLs[0])
			cancel()
			if err != nil {
				am.Error = err.Error()
			} else {
				am.Healthy = len(st.Errors) == 0
				am.Error = strings.Join(st.Errors, "; ")
				am.Leader = st.Leader == m.ID
				am.RaftTerm, am.RaftIndex = st.RaftTerm, st.RaftIndex
				am.DBSize, am.DBSizeInUse, am.Version = st.DbSize, st.DbSizeInUse, st.Version
			}
		}
		out.Members = append(out.Members, am)
	}
	al, err := n.client.AlarmList(ctx)
	if err == nil {
		for _, a := range al.Alarms {
			out.Alarms = append(out.Alarms, fmt.Sprintf("%s on %s", a.Alarm, memberID(a.MemberID)))
		}
	}
	return out, nil
}

// memberName is a member's name: etcd's, or, for a member not started
// yet, the one it was added under.
func (n *Node) memberName(ctx context.Context, id uint64, name string) string {
	if name != "" {
		return name
	}
	resp, err := n.client.Get(ctx, n.store.Layout().MemberNameKey(memberID(id)))
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// version answers which build the node is, the API it serves, and the
// version of the etcd member it talks to first (its own, when embedded).
func (n *Node) version(w http.ResponseWriter, r *http.Request) error {
	v := api.VersionInfo{Name: n.cfg.Name, Node: version.Build(), API: version.API}
	if eps := n.client.Endpoints(); len(eps) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if st, err := n.client.Status(ctx, eps[0]); err == nil {
			v.Etcd, v.ClusterID = st.Version, fmt.Sprintf("%x", st.Header.ClusterId)
		}
	}
	return writeJSON(w, http.StatusOK, v)
}

func (n *Node) getCluster(w http.ResponseWriter, r *http.Request) error {
	st, err := n.clusterStatus(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// memberName is what a member may be called: it is written into
// --initial-cluster (name=url,...), so "," and "=" are out.
var memberName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (n *Node) addMember(w http.ResponseWriter, r *http.Request) error {
	var req api.MemberAddRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if !memberName.MatchString(req.Name) {
		return cfgerr.Errorf(cfgerr.Invalid, "", "name", "%q is not a member name: 1 to 63 of [A-Za-z0-9._-], starting with a letter or digit", req.Name)
	}
	if u, err := url.Parse(req.PeerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" ||
		u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return cfgerr.Errorf(cfgerr.Invalid, "", "peer_url", "%q is not a peer URL: give scheme://host:port, such as http://10.0.0.4:2380", req.PeerURL)
	}
	ml, err := n.client.MemberList(r.Context())
	if err != nil {
		return cfgerr.Wrap(cfgerr.Unavailable, err)
	}
	for _, m := range ml.Members {
		if n.memberName(r.Context(), m.ID, m.Name) == req.Name {
			return cfgerr.Errorf(cfgerr.Conflict, "", "name", "a member is named %s already (%s)", req.Name, memberID(m.ID))
		}
	}
	// The new member's etcd user, made first: a member is never added
	// without a credential to log in with. cfgadm writes it to a file the
	// new node is started with.
	cred := auth.NewEtcdCredential(auth.NodeUser(req.Name))
	if err := auth.PutEtcdUser(r.Context(), n.client, cred, "root"); err != nil {
		return kv.EtcdError(err)
	}
	resp, err := n.client.MemberAddAsLearner(r.Context(), []string{req.PeerURL})
	if errors.Is(err, rpctypes.ErrUnhealthy) {
		// etcd adds members only to a cluster whose members have all been
		// connected for a while (5 s after a start).
		return cfgerr.Errorf(cfgerr.Unavailable, "", "member", "the cluster is not healthy enough to add a member yet: try again in a few seconds")
	}
	if errors.Is(err, rpctypes.ErrPeerURLExist) {
		return cfgerr.Errorf(cfgerr.Conflict, "", "peer_url", "a member already has the peer URL %s", req.PeerURL)
	}
	if err != nil {
		return kv.EtcdError(err)
	}
	var parts []string
	for _, m := range resp.Members {
		name := m.Name
		if m.ID == resp.Member.ID {
			name = req.Name
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	n.log.Info("member added as a learner", zap.String("name", req.Name), zap.String("id", memberID(resp.Member.ID)))
	// etcd learns a member's name when it starts; until then the name given
	// here is kept, so the member can be listed and removed by it.
	if _, err := n.client.Put(r.Context(), n.store.Layout().MemberNameKey(memberID(resp.Member.ID)), req.Name); err != nil {
		n.log.Warn("could not record the new member's name", zap.String("name", req.Name), zap.Error(err))
	}
	return writeJSON(w, http.StatusOK, api.MemberAdded{
		Member:         api.Member{ID: memberID(resp.Member.ID), Name: req.Name, PeerURLs: resp.Member.PeerURLs, Learner: true},
		InitialCluster: strings.Join(parts, ","), InitialClusterState: "existing",
		EtcdUser: cred.User, EtcdPassword: cred.Password, Keyring: n.keyringFile()})
}

func (n *Node) removeMember(w http.ResponseWriter, r *http.Request) error {
	which := r.PathValue("member")
	ml, err := n.client.MemberList(r.Context())
	if err != nil {
		return cfgerr.Wrap(cfgerr.Unavailable, err)
	}
	for _, m := range ml.Members {
		if memberID(m.ID) == which || n.memberName(r.Context(), m.ID, m.Name) == which {
			if _, err := n.client.MemberRemove(r.Context(), m.ID); err != nil {
				return cfgerr.Errorf(cfgerr.Conflict, "", "member", "etcd refused to remove %s: %v", which, err)
			}
			n.client.Delete(r.Context(), n.store.Layout().MemberNameKey(memberID(m.ID)))
			// Its etcd user goes with it: its credential logs in no more.
			if name := n.memberName(r.Context(), m.ID, m.Name); name != "" {
				if _, err := n.client.UserDelete(r.Context(), auth.NodeUser(name)); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
					n.log.Warn("could not delete the removed member's etcd user", zap.String("user", auth.NodeUser(name)), zap.Error(err))
				}
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	return cfgerr.Errorf(cfgerr.NotFound, "", "member", "no member %q", which)
}

func (n *Node) defrag(w http.ResponseWriter, r *http.Request) error {
	st, err := n.clusterStatus(r.Context())
	if err != nil {
		return err
	}
	out := api.DefragResult{}
	for _, m := range st.Members {
		if len(m.ClientURLs) == 0 {
			continue
		}
		// One member at a time: a member defragmenting does not serve.
		if _, err := n.client.Defragment(r.Context(), m.ClientURLs[0]); err != nil {
			m.Error = err.Error()
		}
		out.Members = append(out.Members, m)
	}
	return writeJSON(w, http.StatusOK, out)
}

// snapshot streams an etcd snapshot of this node's member, with its SHA-256
// in a trailer.
func (n *Node) snapshot(w http.ResponseWriter, r *http.Request) error {
	resp, err := n.client.SnapshotWithVersion(r.Context())
	if err != nil {
		return cfgerr.Wrap(cfgerr.Unavailable, err)
	}
	defer resp.Snapshot.Close()
	w.Header().Set("Trailer", api.SnapshotSumTrailer)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Etcd-Version", resp.Version)
	h := sha256.New()
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), d: n.cfg.EventWriteTimeout}
	if _, err := io.Copy(io.MultiWriter(dw, h), resp.Snapshot); err != nil {
		n.log.Warn("snapshot stream broke", zap.Error(err))
		return nil // the client sees a broken stream and a missing checksum
	}
	w.Header().Set(api.SnapshotSumTrailer, hex.EncodeToString(h.Sum(nil)))
	return nil
}

// promoteLearners promotes learners once etcd says they caught up (it
// refuses before). It runs on every node; etcd serialises the promotion.
func (n *Node) promoteLearners(ctx context.Context) {
	defer n.bg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	warned := map[uint64]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ml, err := n.client.MemberList(ctx)
		if err != nil {
			continue
		}
		for _, m := range ml.Members {
			if !m.IsLearner || len(m.ClientURLs) == 0 {
				continue
			}
			// Only a learner added through the API (which records its name)
			// gets a vote: one added past it, straight through etcd, does not.
			key := n.store.Layout().MemberNameKey(memberID(m.ID))
			if rec, err := n.client.Get(ctx, key); err != nil || len(rec.Kvs) == 0 {
				if !warned[m.ID] {
					warned[m.ID] = true
					n.log.Warn("a learner not added with cfgadm member add: not promoting it", zap.String("name", m.Name), zap.String("id", memberID(m.ID)))
				}
				continue
			}
			if _, err := n.client.MemberPromote(ctx, m.ID); err == nil {
				n.log.Info("learner promoted", zap.String("name", m.Name), zap.String("id", memberID(m.ID)))
			}
		}
	}
}

// pruneAudit keeps the audit trail within its retention: at start and every
// PruneEvery. Of embedded members, only the leader's node prunes (the work
// is done once; a new leader's node takes it up at its next tick); in
// external mode every node does. Deletions are idempotent either way.
func (n *Node) pruneAudit(ctx context.Context) {
	defer n.bg.Done()
	t := time.NewTicker(n.cfg.PruneEvery)
	defer t.Stop()
	for {
		if n.etcd != nil && n.etcd.Server.Leader() != n.etcd.Server.MemberID() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				continue
			}
		}
		pruned, err := n.store.PruneAudit(ctx, n.cfg.AuditRetention)
		if err != nil && ctx.Err() == nil {
			n.log.Warn("pruning the audit trail failed", zap.Error(err))
		} else if pruned > 0 {
			n.log.Info("audit trail pruned", zap.Int("records", pruned))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

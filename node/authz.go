package node

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// policy is what a route needs of its caller. Every route of the API has
// one, in the route table itself (routeTable); a test walks the table.
type policy struct {
	public bool      // no credential at all (/healthz, /readyz)
	verb   auth.Verb // "" with !public: any authenticated caller
	key    string    // the path value naming the one key the route touches
	all    bool      // the verb on every key: cluster, schema and auth operations
}

var (
	public        = policy{public: true}
	authenticated = policy{}
)

func needs(v auth.Verb) policy        { return policy{verb: v} }
func onKey(v auth.Verb) policy        { return policy{verb: v, key: "key"} }
func onEverything(v auth.Verb) policy { return policy{verb: v, all: true} }

// route is one entry of the route table.
type route struct {
	pattern string
	policy  policy
	handler func(w http.ResponseWriter, r *http.Request) error
}

type principalKey struct{}

// principal is the authenticated caller of a request.
func principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*auth.Principal)
	return p
}

// actor is who the audit trail names for a request: the token's subject.
func actor(r *http.Request) string {
	if p := principal(r); p != nil {
		return p.Subject
	}
	return "anonymous"
}

// bearer is the credential a request presents: Authorization: Bearer, or
// X-API-Key (what OFREP clients send).
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
		return "malformed"
	}
	return r.Header.Get("X-API-Key")
}

// authorize authenticates a request and checks its route's policy; the
// principal goes into the request's context.
func (n *Node) authorize(p policy, r *http.Request) (*http.Request, error) {
	if p.public {
		return r, nil
	}
	if err := n.limits.failuresLeft(r); err != nil {
		return r, err
	}
	who, err := n.auth.Authenticate(r.Context(), bearer(r))
	if err != nil {
		n.limits.failed(r)
		return r, err
	}
	r = r.WithContext(context.WithValue(r.Context(), principalKey{}, who))
	if err := n.limits.allow(who.Name, r); err != nil {
		return r, err
	}
	switch {
	case p.verb == "":
	case p.all && !who.Can(p.verb, ""):
		return r, auth.Forbidden(who, p.verb, "every key (this needs the verb on the whole cluster)")
	case p.key != "" && !who.Can(p.verb, r.PathValue(p.key)):
		return r, auth.Forbidden(who, p.verb, "key "+r.PathValue(p.key))
	case !who.CanSome(p.verb):
		return r, auth.Forbidden(who, p.verb, "any key")
	}
	return r, nil
}

// allow checks the caller may do verb on each key (a batch, a rollback).
func allow(r *http.Request, verb auth.Verb, keys ...string) error {
	who := principal(r)
	for _, k := range keys {
		if !who.Can(verb, k) {
			return auth.Forbidden(who, verb, "key "+k)
		}
	}
	return nil
}

// mayRead reports whether the caller may read key.
func mayRead(r *http.Request, key string) bool { return principal(r).Can(auth.Read, key) }

// AdminTokenFile is where a node keeps the admin token it made at its first
// start: only its owner may read it.
func (n *Node) AdminTokenFile() string { return filepath.Join(n.cfg.DataDir, "admin.token") }

var nameUnsafe = regexp.MustCompile(`[^a-z0-9._-]+`)

// bootstrapToken makes this node's admin token at its first start: the
// token admin-NAME, written to <data-dir>/admin.token (0600), so the first
// cfgadm command needs no setup. Each node makes its own: a token's secret
// is never stored, so one node's cannot be handed to another.
func (n *Node) bootstrapToken(ctx context.Context) error {
	name := strings.Trim(nameUnsafe.ReplaceAllString("admin-"+strings.ToLower(n.cfg.Name), "-"), "-._")
	name = name[:min(len(name), 63)]
	path := n.AdminTokenFile()
	for _, t := range n.auth.Tokens() {
		if t.Name == name {
			if _, err := os.Stat(path); err != nil {
				n.log.Warn("this node's admin token exists but its file is gone: make another with cfgadm token create",
					zap.String("token", name), zap.String("file", path))
			}
			return nil
		}
	}
	token, _, err := n.auth.CreateToken(ctx, kv.Meta{Actor: "cfgnode:" + n.cfg.Name, Comment: "the node's admin token, at its first start"},
		auth.Token{Name: name, Subject: "admin@" + n.cfg.Name, Roles: []string{"admin"}}, 0)
	if cfgerr.CodeOf(err) == cfgerr.Conflict {
		return nil // made by this node's earlier start, seen late
	}
	if err != nil {
		return fmt.Errorf("creating the admin token: %w", err)
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	n.log.Info("made this node's admin token", zap.String("token", name), zap.String("file", path))
	return nil
}

func (n *Node) whoami(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	out := api.WhoAmI{Token: p.Name, Subject: p.Subject}
	for _, g := range p.Describe() {
		out.Grants = append(out.Grants, wireGrant(g))
	}
	return writeJSON(w, http.StatusOK, out)
}

func wireGrant(g auth.Grant) api.Grant {
	vs := make([]string, len(g.Verbs))
	for i, v := range g.Verbs {
		vs[i] = string(v)
	}
	return api.Grant{Verbs: vs, Prefix: g.Prefix}
}

func wireToken(t auth.Token) api.TokenInfo {
	return api.TokenInfo{Name: t.Name, Subject: t.Subject, Roles: t.Roles, Prefixes: t.Prefixes, Created: t.Created,
		Expires: t.Expires, Creator: t.Creator}
}

func (n *Node) listTokens(w http.ResponseWriter, r *http.Request) error {
	out := api.TokenList{Tokens: []api.TokenInfo{}}
	for _, t := range n.auth.Tokens() {
		out.Tokens = append(out.Tokens, wireToken(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) createToken(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var ttl time.Duration
	if req.Expires != "" {
		d, err := parseDuration("expires", req.Expires)
		if err != nil {
			return err
		}
		ttl = d
	}
	token, t, err := n.auth.CreateToken(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment},
		auth.Token{Name: req.Name, Subject: req.Subject, Roles: req.Roles, Prefixes: req.Prefixes}, ttl)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.TokenCreated{TokenInfo: wireToken(*t), Token: token})
}

func (n *Node) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := n.auth.RevokeToken(r.Context(), kv.Meta{Actor: actor(r), Comment: r.URL.Query().Get("comment")}, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func wireServiceAccount(sa auth.ServiceAccount) api.ServiceAccount {
	return api.ServiceAccount{Name: sa.Name, Role: sa.Role, Created: sa.Created, Creator: sa.Creator}
}

func (n *Node) listServiceAccounts(w http.ResponseWriter, r *http.Request) error {
	sas, err := n.auth.ServiceAccounts(r.Context())
	if err != nil {
		return err
	}
	out := api.ServiceAccountList{ServiceAccounts: []api.ServiceAccount{}}
	for _, sa := range sas {
		out.ServiceAccounts = append(out.ServiceAccounts, wireServiceAccount(sa))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) createServiceAccount(w http.ResponseWriter, r *http.Request) error {
	var req api.ServiceAccountRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	cred, sa, err := n.auth.CreateServiceAccount(r.Context(), kv.Meta{Actor: actor(r), Comment: req.Comment}, req.Name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.ServiceAccountCreated{ServiceAccount: wireServiceAccount(*sa),
		EtcdUser: cred.User, EtcdPassword: cred.Password})
}

func (n *Node) deleteServiceAccount(w http.ResponseWriter, r *http.Request) error {
	if err := n.auth.DeleteServiceAccount(r.Context(), kv.Meta{Actor: actor(r), Comment: r.URL.Query().Get("comment")}, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (n *Node) listRoles(w http.ResponseWriter, r *http.Request) error {
	out := api.RoleList{Roles: []api.Role{}}
	for _, role := range n.auth.Roles() {
		ar := api.Role{Name: role.Name, BuiltIn: role.BuiltIn}
		for _, g := range role.Grants {
			ar.Grants = append(ar.Grants, wireGrant(g))
		}
		out.Roles = append(out.Roles, ar)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (n *Node) putRole(w http.ResponseWriter, r *http.Request) error {
	var req api.Role
	if err := decode(r, &req); err != nil {
		return err
	}
	role := auth.Role{Name: req.Name}
	for _, g := range req.Grants {
		ag := auth.Grant{Prefix: g.Prefix}
		for _, v := range g.Verbs {
			verb, err := auth.ParseVerb(v)
			if err != nil {
				return err
			}
			ag.Verbs = append(ag.Verbs, verb)
		}
		role.Grants = append(role.Grants, ag)
	}
	if err := n.auth.PutRole(r.Context(), kv.Meta{Actor: actor(r)}, role); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, req)
}

func (n *Node) deleteRole(w http.ResponseWriter, r *http.Request) error {
	if err := n.auth.DeleteRole(r.Context(), kv.Meta{Actor: actor(r)}, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

package node

import (
	"cfgcluster/cfgerr"
	"context"
	"encoding/json"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/etcdtest"
)

func startAuthNode(t testing.TB, opts ...func(*Config)) (*Node, *api.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := Config{DataDir: t.TempDir(), ListenClientURLs: []string{"http://" + etcdtest.FreeAddr(t)},
		ListenPeerURLs: []string{"http://" + etcdtest.FreeAddr(t)}, APIAddr: "127.0.0.1:0", SchemaFile: "../examples/schema.yaml"}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	tok, err := os.ReadFile(n.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(n.AdminTokenFile()); st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode %v", st.Mode())
	}
	return n, api.NewClient(n.APIURL(), strings.TrimSpace(string(tok)))
}

// call sends a request with token ("" for none) and returns its status and body.
func call(t *testing.T, n *Node, method, path, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader("{}")
	}
	req, _ := http.NewRequestWithContext(ctx, method, n.APIURL()+path, body)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, "" // a stream: its status is the answer
	}
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// Every route of the table has a policy, every one but /healthz and
// /readyz needs a credential, and each built-in role gets exactly what its
// verbs allow on each route.
func TestEveryRouteIsAuthorized(t *testing.T) {
	n, admin := startAuthNode(t)
	ctx := context.Background()
	// What each built-in role may do, written out here, not derived from
	// package auth.
	verbs := map[string][]auth.Verb{
		"viewer": {auth.Read}, "editor": {auth.Read, auth.Write}, "approver": {auth.Read, auth.Approve},
		"operator": {auth.Read, auth.Operate}, "admin": auth.Verbs,
	}
	tokens := map[string]string{}
	for role := range verbs {
		tok, err := admin.CreateToken(ctx, api.TokenRequest{Name: "t-" + role, Roles: []string{role}})
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok.Token
	}
	// The verb each route needs, written out: a route whose policy differs,
	// or that is missing here, fails.
	want := map[string]auth.Verb{
		"GET /v1/keys": auth.Read, "GET /v1/keys/{key}": auth.Read, "PUT /v1/keys/{key}": auth.Write,
		"DELETE /v1/keys/{key}": auth.Write, "GET /v1/keys/{key}/history": auth.Read, "GET /v1/keys/{key}/diff": auth.Read,
		"POST /v1/apply": auth.Write, "POST /v1/rollback": auth.Write, "GET /v1/schema": auth.Read,
		"PUT /v1/schema": auth.Admin, "POST /v1/schema/validate": auth.Read, "GET /v1/audit": auth.Read,
		"GET /v1/watch": auth.Read, "GET /v1/maintenance": auth.Read, "POST /v1/maintenance": auth.Operate,
		"GET /v1/maintenance/{scope}": auth.Read, "POST /v1/maintenance/{scope}/extend": auth.Operate,
		"DELETE /v1/maintenance/{scope}": auth.Operate, "DELETE /v1/maintenance/scheduled/{id}": auth.Operate,
		"GET /v1/instances": auth.Operate, "GET /v1/rollout/{revision}": auth.Operate, "GET /v1/cluster": auth.Operate,
		"POST /v1/members": auth.Admin, "DELETE /v1/members/{member}": auth.Admin, "POST /v1/defrag": auth.Admin,
		"GET /v1/snapshot": auth.Admin, "GET /v1/version": "", "GET /v1/whoami": "", "GET /v1/tokens": auth.Admin,
		"POST /v1/tokens": auth.Admin, "DELETE /v1/tokens/{name}": auth.Admin, "GET /v1/roles": auth.Admin,
		"GET /v1/proposals": auth.Read, "GET /v1/proposals/{id}": auth.Read, "POST /v1/proposals/{id}/{decision}": "",
		"GET /v1/encryption-keys": auth.Admin, "POST /v1/encryption-keys": auth.Admin,
		"POST /v1/encryption-keys/export": auth.Admin, "POST /v1/encryption-keys/reencrypt": auth.Admin,
		"DELETE /v1/encryption-keys/{id}": auth.Admin, "POST /v1/encryption-keys/rewrap": auth.Admin,
		"GET /v1/service-accounts": auth.Admin, "POST /v1/service-accounts": auth.Admin, "DELETE /v1/service-accounts/{name}": auth.Admin,
		"POST /v1/roles": auth.Admin, "DELETE /v1/roles/{name}": auth.Admin, "GET /healthz": "", "GET /readyz": "",
		"POST /ofrep/v1/evaluate/flags/{key}": auth.Read, "POST /ofrep/v1/evaluate/flags": auth.Read,
		"GET /ofrep/v1/events": auth.Read, "GET /v1/flags/usage": auth.Read,
	}
	for _, rt := range n.routeTable() {
		v, ok := want[rt.pattern]
		if !ok || v != rt.policy.verb {
			t.Errorf("%s needs %q; this test says %q (ok %v): change one of them", rt.pattern, rt.policy.verb, v, ok)
		}
		delete(want, rt.pattern)
	}
	if len(want) > 0 {
		t.Errorf("routes gone from the table: %v", want)
	}
	fill := strings.NewReplacer("{key}", "log.level", "{scope}", "billing", "{id}", "none", "{revision}", "1",
		"{member}", "nobody", "{name}", "nobody", "{decision}", "approve")
	for _, rt := range n.routeTable() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = fill.Replace(path)
		if rt.policy.public {
			if status, _ := call(t, n, method, path, ""); status == 401 || status == 403 {
				t.Errorf("%s is public but answered %d", rt.pattern, status)
			}
			continue
		}
		if status, body := call(t, n, method, path, ""); status != 401 || !strings.Contains(body, "unauthenticated") {
			t.Errorf("%s without a token: %d %s", rt.pattern, status, body)
		}
		if status, _ := call(t, n, method, path, "cfgt1_forged_"+strings.Repeat("A", 43)); status != 401 {
			t.Errorf("%s with a forged token: %d", rt.pattern, status)
		}
		for role, vs := range verbs {
			allowed := rt.policy.verb == "" || slices.Contains(vs, rt.policy.verb)
			status, body := call(t, n, method, path, tokens[role])
			switch {
			case allowed && (status == 401 || status == 403):
				t.Errorf("%s as %s: %d %s", rt.pattern, role, status, body)
			case !allowed && (status != 403 || !strings.Contains(body, string(rt.policy.verb))):
				t.Errorf("%s as %s: %d %s, want 403 naming %s", rt.pattern, role, status, body, rt.policy.verb)
			}
		}
	}
}

// A custom role on a prefix, and a token narrowed to one: writes, lists,
// the audit trail and streams show and allow only those keys.
func TestPrefixRoles(t *testing.T) {
	n, admin := startAuthNode(t)
	ctx := context.Background()
	if err := admin.PutRole(ctx, api.Role{Name: "billing-editor", Grants: []api.Grant{{Verbs: []string{"read", "write"}, Prefix: "billing."}}}); err != nil {
		t.Fatal(err)
	}
	if err := admin.PutRole(ctx, api.Role{Name: "bad", Grants: []api.Grant{{Verbs: []string{"fly"}}}}); err == nil || !strings.Contains(err.Error(), `"fly" is not a verb`) {
		t.Fatalf("a role with an unknown verb: %v", err)
	}
	tok, err := admin.CreateToken(ctx, api.TokenRequest{Name: "billing-ci", Subject: "ci@billing", Roles: []string{"billing-editor"}})
	if err != nil {
		t.Fatal(err)
	}
	billing := api.NewClient(n.APIURL(), tok.Token)
	if _, err := admin.Set(ctx, "log.level", api.SetRequest{Text: ptr("warn")}); err != nil {
		t.Fatal(err)
	}
	if _, err := billing.Set(ctx, "billing.limits", api.SetRequest{Text: ptr(`{"daily": 5}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := billing.Set(ctx, "log.level", api.SetRequest{Text: ptr("debug")}); err == nil || !strings.Contains(err.Error(), "may not write key log.level") {
		t.Fatalf("a write outside the prefix: %v", err)
	}
	if _, err := billing.Get(ctx, "log.level", 0); err == nil || !strings.Contains(err.Error(), "may not read key log.level") {
		t.Fatalf("a read outside the prefix: %v", err)
	}
	if _, err := billing.History(ctx, "log.level", 0); err == nil {
		t.Fatal("the history of a key outside the prefix")
	}
	// A batch is refused whole if any key is outside.
	if _, err := billing.Apply(ctx, api.ApplyRequest{Changes: []api.Change{{Key: "billing.limits", Text: ptr(`{"daily": 6}`)}, {Key: "site.banner", Text: ptr("x")}}}); err == nil {
		t.Fatal("a batch with a key outside the prefix")
	}
	if _, err := billing.Rollback(ctx, api.RollbackRequest{All: true, To: 1}); err == nil {
		t.Fatal("rollback --all by a prefix role")
	}
	l, err := billing.List(ctx, "", 0)
	if err != nil || len(l.Values) != 1 || l.Values[0].Key != "billing.limits" {
		t.Fatalf("list: %+v %v", l, err)
	}
	a, err := billing.Audit(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range a.Records {
		for _, c := range r.Changes {
			if !strings.HasPrefix(c.Key, "billing.") {
				t.Fatalf("the audit trail showed %s to billing-ci", c.Key)
			}
		}
	}
	if v, err := billing.Get(ctx, "billing.limits", 0); err != nil || v.Actor != "ci@billing" {
		t.Fatalf("the actor is the token's subject: %+v %v", v, err)
	}
	if status, _ := call(t, n, "GET", "/v1/watch?prefix=", tok.Token); status != 403 {
		t.Fatalf("a stream of every key: %d", status)
	}
	if status, _ := call(t, n, "GET", "/v1/watch?prefix=billing.", tok.Token); status != 200 {
		t.Fatalf("a stream of billing.: %d", status)
	}
	w, err := billing.WhoAmI(ctx)
	if err != nil || w.Subject != "ci@billing" || len(w.Grants) != 1 || w.Grants[0].Prefix != "billing." {
		t.Fatalf("whoami: %+v %v", w, err)
	}
	// A token narrowed by prefix: admin's role, site. keys only.
	site, err := admin.CreateToken(ctx, api.TokenRequest{Name: "site-admin", Roles: []string{"admin"}, Prefixes: []string{"site."}})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := call(t, n, "GET", "/v1/tokens", site.Token); status != 403 {
		t.Fatalf("a prefix-narrowed admin listed tokens: %d", status)
	}
	// Refusals are in the audit trail, for admins: who, what, why, and
	// never a token.
	forged := "cfgt1_billing-ci_" + strings.Repeat("Z", 43)
	call(t, n, "GET", "/v1/keys/billing.limits", forged)
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := admin.Audit(ctx, "", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var forbidden, unauthenticated bool
		for _, r := range a.Records {
			forbidden = forbidden || r.Action == "refused" && r.Actor == "ci@billing (token billing-ci)" &&
				strings.Contains(r.Comment, "PUT /v1/keys/log.level: 403") && strings.Contains(r.Comment, "may not write key log.level")
			unauthenticated = unauthenticated || r.Action == "refused" && strings.HasPrefix(r.Actor, "unauthenticated from 127.0.0.1") &&
				strings.Contains(r.Comment, "GET /v1/keys/billing.limits: 401")
		}
		if forbidden && unauthenticated {
			if b, _ := json.Marshal(a); strings.Contains(string(b), "ZZZZZZ") || strings.Contains(string(b), tok.Token) {
				t.Fatalf("a token in the audit trail: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusals not in the audit trail: %+v", a.Records)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, _ := billing.Audit(ctx, "", 0, 0); slices.ContainsFunc(a.Records, func(r api.AuditRecord) bool { return r.Action == "refused" }) {
		t.Fatal("refusals shown to a non-admin")
	}
	// Revoked: refused at once on this node.
	if err := admin.RevokeToken(ctx, "billing-ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := billing.Get(ctx, "billing.limits", 0); err == nil || !strings.Contains(err.Error(), "unknown or revoked") {
		t.Fatalf("a revoked token: %v", err)
	}
	// Token listings never hold a secret or its hash.
	tl, _ := json.Marshal(must(admin.Tokens(ctx)))
	if strings.Contains(string(tl), "hash") || strings.Contains(string(tl), tok.Token[20:]) {
		t.Fatalf("a token listing leaks: %s", tl)
	}
}

func ptr(s string) *string { return &s }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Over its rate a token gets 429 with Retry-After, writes and reads apart;
// an address that keeps failing to authenticate is refused before its
// tokens are looked at; both are counted.
func TestRateLimits(t *testing.T) {
	n, admin := startAuthNode(t, func(c *Config) { c.RateWrites, c.RateReads, c.AuthFailureRate = 5, -1, 1 })
	ctx := context.Background()
	limited := 0
	for i := range 40 {
		_, err := admin.Set(ctx, "site.banner", api.SetRequest{Text: ptr(fmt.Sprint(i))})
		if cfgerr.CodeOf(err) == cfgerr.TooMany {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 || limited > 30 {
		t.Fatalf("%d of 40 writes limited at 5 a second (bursts of 10)", limited)
	}
	for range 200 { // reads have no limit here
		if _, err := admin.Get(ctx, "site.banner", 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		call(t, n, "PUT", "/v1/keys/site.banner", admin.Token)
	}
	resp, err := http.DefaultClient.Do(withToken(n, "PUT", admin.Token))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the write rate: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// A brute force: 100 failures pass as 401s, then 429s, for a valid
	// token from that address too.
	statuses := map[int]int{}
	for range 150 {
		status, _ := call(t, n, "GET", "/v1/keys/site.banner", "cfgt1_guess_"+strings.Repeat("B", 43))
		statuses[status]++
	}
	if statuses[401] < 95 || statuses[429] < 45 {
		t.Fatalf("a brute force: %v", statuses)
	}
	if status, _ := call(t, n, "GET", "/v1/keys/site.banner", admin.Token); status != 429 {
		t.Fatalf("a valid token from a brute-forcing address: %d", status)
	}
	if w, f := testutil.ToFloat64(n.limits.rejected.WithLabelValues("write")), testutil.ToFloat64(n.limits.rejected.WithLabelValues("auth_failure")); w == 0 || f < 45 {
		t.Fatalf("counted %v write and %v auth_failure refusals", w, f)
	}
}

func withToken(n *Node, method, token string) *http.Request {
	req, _ := http.NewRequest(method, n.APIURL()+"/v1/keys/site.banner", strings.NewReader(`{"text": "x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// A token made by another cluster is refused, though its name (each node's
// bootstrap token is admin-NAME) exists here too: only its hash would match.
func TestTokenOfAnotherCluster(t *testing.T) {
	_, a := startAuthNode(t)
	b, own := startAuthNode(t)
	if !strings.HasPrefix(a.Token, "cfgt1_admin-default_") || !strings.HasPrefix(own.Token, "cfgt1_admin-default_") {
		t.Fatalf("bootstrap tokens %q… and %q…", a.Token[:20], own.Token[:20])
	}
	status, body := call(t, b, "GET", "/v1/keys/site.banner", a.Token)
	if status != 401 || !strings.Contains(body, "unknown or revoked") || strings.Contains(body, a.Token) {
		t.Fatalf("another cluster's token: %d %s", status, body)
	}
	if status, _ := call(t, b, "GET", "/v1/keys/site.banner", own.Token); status != 200 {
		t.Fatalf("this cluster's token: %d", status)
	}
}

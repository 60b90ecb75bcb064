package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/node"
)

func TestMain(m *testing.M) { etcdtest.VerifyNoLeaks(m) }

func startNode(t testing.TB, schemaFile string, opts ...func(*node.Config)) (*node.Node, *api.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := node.Config{
		DataDir:          t.TempDir(),
		ListenClientURLs: []string{"http://" + etcdtest.FreeAddr(t)},
		ListenPeerURLs:   []string{"http://" + etcdtest.FreeAddr(t)},
		APIAddr:          "127.0.0.1:0",
		SchemaFile:       schemaFile,
		PublicMetrics:    true, // the tests' raw metrics reads
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	c := testerClient(t, n)
	testTokens.Store(strings.TrimPrefix(n.APIURL(), "http://"), c.Token)
	return n, c
}

// testTokens holds each test node's tester token by API address, for the
// tests' raw requests.
var testTokens sync.Map

func tokenOf(hostport string) string {
	t, _ := testTokens.Load(hostport)
	s, _ := t.(string)
	return s
}

// nonAuth counts the audit records that are not token or role changes
// or refused requests.
func nonAuth(rs []api.AuditRecord) int {
	n := 0
	for _, r := range rs {
		if r.Action != "auth" && r.Action != "refused" {
			n++
		}
	}
	return n
}

// testerClient is a client with a token of subject "tester" (role admin),
// made with the node's own admin token.
func testerClient(t testing.TB, n *node.Node) *api.Client {
	t.Helper()
	b, err := os.ReadFile(n.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewClient(n.APIURL(), strings.TrimSpace(string(b)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := admin.CreateToken(ctx, api.TokenRequest{Name: fmt.Sprintf("tester-%d", time.Now().UnixNano()), Subject: "tester", Roles: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(n.APIURL(), tok.Token)
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func str(s string) *string { return &s }

func TestAPIRoundTrip(t *testing.T) {
	_, c := startNode(t, "../examples/schema.yaml")
	ctx := bg(t)
	v, err := c.Get(ctx, "session.idle_timeout", 0)
	if err != nil || v.Value != "15m0s" || v.Source != "default" {
		t.Fatalf("get default: %+v %v", v, err)
	}
	r1, err := c.Set(ctx, "session.idle_timeout", api.SetRequest{Text: str("20m"), Comment: "longer"})
	if err != nil || r1.Revision == 0 || r1.Changes[0].New != "20m0s" {
		t.Fatalf("set: %+v %v", r1, err)
	}
	// A typed JSON value works as well as text.
	if _, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Value: 32}); err != nil {
		t.Fatal(err)
	}
	v, _ = c.Get(ctx, "session.idle_timeout", 0)
	if v.Value != "20m0s" || v.Actor != "tester" || v.Comment != "longer" || v.Revision != r1.Revision {
		t.Fatalf("get: %+v", v)
	}
	l, err := c.List(ctx, "taskqueue.", 0)
	if err != nil || len(l.Values) != 2 || l.Values[0].Value != float64(32) {
		t.Fatalf("list: %+v %v", l, err)
	}
	r2, err := c.Apply(ctx, api.ApplyRequest{Changes: []api.Change{
		{Key: "session.absolute_timeout", Text: str("10h")}, {Key: "session.idle_timeout", Value: "9h"},
	}, Comment: "batch"})
	if err != nil || len(r2.Changes) != 2 {
		t.Fatalf("apply: %+v %v", r2, err)
	}
	h, err := c.History(ctx, "session.idle_timeout", 0)
	if err != nil || len(h.Entries) != 2 || h.Entries[0].Value != "9h0m0s" || h.Entries[0].Action != "apply" {
		t.Fatalf("history: %+v %v", h, err)
	}
	d, err := c.Diff(ctx, "session.idle_timeout", r1.Revision, 0)
	if err != nil || !d.Changed || d.Old.Value != "20m0s" || d.New.Value != "9h0m0s" {
		t.Fatalf("diff: %+v %v", d, err)
	}
	rb, err := c.Rollback(ctx, api.RollbackRequest{Key: "session.idle_timeout", To: r1.Revision})
	if err != nil || rb.Changes[0].New != "20m0s" {
		t.Fatalf("rollback: %+v %v", rb, err)
	}
	if _, err := c.Rollback(ctx, api.RollbackRequest{All: true, To: r1.Revision}); err != nil {
		t.Fatalf("rollback all: %v", err)
	}
	if v, _ := c.Get(ctx, "taskqueue.max_workers", 0); v.Source != "default" {
		t.Fatalf("rollback all left %+v", v)
	}
	if _, err := c.Delete(ctx, "session.idle_timeout", "back to default"); err != nil {
		t.Fatal(err)
	}
	a, err := c.Audit(ctx, "session.idle_timeout", 0, 0)
	if err != nil || len(a.Records) != 4 || a.Records[0].Action != "delete" || a.Records[0].Comment != "back to default" {
		t.Fatalf("audit: %+v %v", a, err)
	}
	// Sensitive values never leave the API.
	if _, err := c.Set(ctx, "db.password", api.SetRequest{Text: str("hunter2")}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "db.password", 0); v.Value != api.Redacted || !v.Sensitive {
		t.Fatalf("sensitive: %+v", v)
	}
	h, _ = c.History(ctx, "db.password", 0)
	if h.Entries[0].Value != api.Redacted {
		t.Fatalf("sensitive history: %+v", h)
	}
}

func TestAPIErrors(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	ctx := bg(t)
	if _, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Text: str("8")}); err != nil {
		t.Fatal(err)
	}
	stale := int64(1)
	cases := []struct {
		name   string
		call   func() error
		code   cfgerr.Code
		key    string
		phrase string
	}{
		{"wrong type", func() error {
			_, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Value: "many"})
			return err
		}, cfgerr.Invalid, "taskqueue.max_workers", "an int is required"},
		{"out of range", func() error {
			_, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Text: str("0")})
			return err
		}, cfgerr.Invalid, "taskqueue.max_workers", "below the minimum 1"},
		{"enum miss", func() error {
			_, err := c.Set(ctx, "log.level", api.SetRequest{Text: str("loud")})
			return err
		}, cfgerr.Invalid, "log.level", "not one of"},
		{"pattern miss", func() error {
			_, err := c.Set(ctx, "alerts.channels", api.SetRequest{Text: str("fax")})
			return err
		}, cfgerr.Invalid, "alerts.channels", "does not match pattern"},
		{"unknown key", func() error {
			_, err := c.Set(ctx, "no.such", api.SetRequest{Text: str("1")})
			return err
		}, cfgerr.Invalid, "no.such", "not in the schema"},
		{"broken rule", func() error {
			_, err := c.Set(ctx, "session.idle_timeout", api.SetRequest{Text: str("9h")})
			return err
		}, cfgerr.Invalid, "session.idle_timeout", "must not exceed"},
		{"bad key name", func() error {
			_, err := c.Set(ctx, "Bad$Key", api.SetRequest{Text: str("1")})
			return err
		}, cfgerr.Invalid, "Bad$Key", "not allowed"},
		{"over 1 MiB", func() error {
			_, err := c.Set(ctx, "billing.limits", api.SetRequest{Value: map[string]any{"x": strings.Repeat("y", 1<<20)}})
			return err
		}, cfgerr.Invalid, "billing.limits", "over the 1048576-byte limit"},
		{"expect_revision", func() error {
			_, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Text: str("9"), ExpectRevision: &stale})
			return err
		}, cfgerr.FailedPrecondition, "taskqueue.max_workers", "expected revision 1"},
		{"not found", func() error {
			_, err := c.Get(ctx, "db.password", 0)
			return err
		}, cfgerr.NotFound, "db.password", "no value and no default"},
		{"bad revision", func() error {
			_, err := c.Get(ctx, "log.level", 1<<40)
			return err
		}, cfgerr.NotFound, "", "future"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			e := cfgerr.First(err)
			if e == nil || e.Code != tc.code || e.Key != tc.key || !strings.Contains(e.Message, tc.phrase) {
				t.Fatalf("err = %v (%s); want %s for key %q with %q", err, cfgerr.CodeOf(err), tc.code, tc.key, tc.phrase)
			}
		})
	}
	// Malformed bodies get one JSON error shape with status 400.
	for _, body := range []string{`{"value": `, `{"valu": 1}`, `{"value": 1} {}`, `[]`} {
		req, _ := http.NewRequest(http.MethodPut, n.APIURL()+"/v1/keys/log.level", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !bytes.Contains(data, []byte(`"code":"invalid"`)) || !bytes.Contains(data, []byte(`"field":"body"`)) {
			t.Errorf("body %q: %d %s", body, resp.StatusCode, data)
		}
	}
	// A batch names every bad key.
	_, err := c.Apply(ctx, api.ApplyRequest{Changes: []api.Change{
		{Key: "log.level", Text: str("loud")}, {Key: "taskqueue.max_workers", Text: str("-1")},
	}})
	if all := cfgerr.All(err); len(all) != 2 || all[0].Key != "log.level" || all[1].Key != "taskqueue.max_workers" {
		t.Fatalf("batch errors: %v", err)
	}
	// Nothing was written by any of it, and the node still serves.
	a, err := c.Audit(ctx, "", 0, 0)
	if err != nil || nonAuth(a.Records) != 2 {
		t.Fatalf("audit after bad input: %d records, %v", len(a.Records), err)
	}
	// Metrics count requests by route and code, and validation failures.
	resp, err := http.Get(n.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`cfgcluster_http_requests_total{code="400",route="PUT /v1/keys/{key}"}`,
		`cfgcluster_kv_validation_failures_total{reason="rule"} 1`,
		`cfgcluster_kv_writes_total{action="set",outcome="invalid"}`,
		`etcd_server_has_leader 1`,
		`cfgcluster_watch_cache_hits_total`,
		`cfgcluster_watch_staleness_seconds`,
		`cfgcluster_watch_subscribers 1`,
	} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("metrics lack %s:\n%s", want, grep(data, "cfgcluster_"))
		}
	}
}

func TestSchemaRoutesAndReadiness(t *testing.T) {
	n, c := startNode(t, "")
	ctx := bg(t)
	get := func(path string) int {
		status, _ := raw(t, "GET", n.APIURL()+path, "", nil)
		return status
	}
	if get("/healthz") != 200 || get("/readyz") != 503 {
		t.Fatal("without a schema: healthy but not ready")
	}
	doc, _ := os.ReadFile("../examples/schema.yaml")
	v, err := c.ValidateSchema(ctx, api.SchemaRequest{Document: "keys: {a: {type: nope}}\nrules: [{name: r, expr: 'b > 1'}]"})
	if err != nil || v.Valid || len(v.Problems) != 1 || v.Problems[0].Key != "a" {
		t.Fatalf("validate: %+v %v", v, err)
	}
	if v, err := c.ValidateSchema(ctx, api.SchemaRequest{Document: string(doc)}); err != nil || !v.Valid {
		t.Fatalf("validate good: %+v %v", v, err)
	}
	if _, err := c.ApplySchema(ctx, api.SchemaRequest{Document: string(doc), Comment: "first"}); err != nil {
		t.Fatal(err)
	}
	if get("/readyz") != 200 {
		t.Fatal("not ready with a schema")
	}
	s, err := c.Schema(ctx)
	if err != nil || s.Document != string(doc) || s.Revision == 0 {
		t.Fatalf("schema: %v", err)
	}
	if _, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Text: str("200")}); err != nil {
		t.Fatal(err)
	}
	narrower := strings.Replace(string(doc), "max: 256", "max: 100", 1)
	_, err = c.ApplySchema(ctx, api.SchemaRequest{Document: narrower})
	if e := cfgerr.First(err); e == nil || e.Key != "taskqueue.max_workers" || !strings.Contains(e.Message, "above the maximum 100") {
		t.Fatalf("narrowing schema: %v", err)
	}
	if get("/v1/nope") != 404 {
		t.Fatal("unknown route")
	}
}

func grep(data []byte, sub string) string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A value near the 1 MiB limit can be changed: the change carries the old
// value too, in its audit record.
func TestLargeValueUpdates(t *testing.T) {
	_, c := startNode(t, "../examples/schema.yaml")
	ctx := bg(t)
	for i := 0; i < 2; i++ {
		v := map[string]any{"blob": strings.Repeat("x", 1000<<10), "n": i}
		if _, err := c.Set(ctx, "billing.limits", api.SetRequest{Value: v}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

func TestMaintenanceRoutes(t *testing.T) {
	_, c := startNode(t, "../examples/schema.yaml")
	ctx := bg(t)
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	for field, bad := range map[string]api.MaintenanceRequest{
		"duration": {Scope: "billing", Reason: "x", Duration: "soon"},
		"scope":    {Scope: "Bad Scope", Reason: "x", Duration: "1h"},
		"reason":   {Scope: "billing", Duration: "1h"},
		"at":       {Scope: "billing", Reason: "x", Duration: "1h", At: &far},
		"reason ":  {Scope: "billing", Reason: strings.Repeat("r", 6<<20), Duration: "1h"},
	} {
		if _, err := c.Maintenance(ctx, bad); cfgerr.CodeOf(err) != cfgerr.Invalid || cfgerr.First(err).Field != strings.TrimSpace(field) {
			t.Errorf("%s: %.200v", field, err)
		}
	}
	// Other bad input is a 400 naming its field, never a 409, 412 or 503.
	minus := int64(-5)
	if _, err := c.Set(ctx, "log.level", api.SetRequest{Text: str("warn"), ExpectRevision: &minus}); cfgerr.CodeOf(err) != cfgerr.Invalid || cfgerr.First(err).Field != "expect_revision" {
		t.Errorf("expect_revision -5: %v", err)
	}
	for _, m := range []api.MemberAddRequest{
		{Name: "m9,evil=http://127.0.0.1:1", PeerURL: "http://127.0.0.1:2390"},
		{Name: "m9", PeerURL: "not a url"},
		{Name: "m9", PeerURL: "http://127.0.0.1"},
	} {
		if _, err := c.AddMember(ctx, m); cfgerr.CodeOf(err) != cfgerr.Invalid {
			t.Errorf("member add %+v: %v", m, err)
		}
	}
	w, err := c.Maintenance(ctx, api.MaintenanceRequest{Scope: "billing", Reason: "upgrade", Duration: "1h"})
	if err != nil || w.Author != "tester" || w.End.Sub(w.Start) != time.Hour {
		t.Fatalf("open: %+v %v", w, err)
	}
	if _, err := c.Maintenance(ctx, api.MaintenanceRequest{Scope: "billing", Reason: "again", Duration: "1h"}); cfgerr.CodeOf(err) != cfgerr.Conflict {
		t.Fatalf("second window: %v", err)
	}
	at := time.Now().Add(time.Hour)
	if _, err := c.Maintenance(ctx, api.MaintenanceRequest{Scope: "search", Reason: "planned", Duration: "30m", At: &at}); err != nil {
		t.Fatal(err)
	}
	l, err := c.MaintenanceList(ctx)
	if err != nil || len(l.Open) != 1 || len(l.Scheduled) != 1 || l.Scheduled[0].Scope != "search" {
		t.Fatalf("list: %+v %v", l, err)
	}
	// A scheduled window can be cancelled, once; a bad id is refused.
	if err := c.CancelMaintenance(ctx, "../../values/x"); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("cancel of a bad id: %v", err)
	}
	if err := c.CancelMaintenance(ctx, l.Scheduled[0].ID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := c.CancelMaintenance(ctx, l.Scheduled[0].ID); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("cancel twice: %v", err)
	}
	if l, err := c.MaintenanceList(ctx); err != nil || len(l.Scheduled) != 0 {
		t.Fatalf("list after cancel: %+v %v", l, err)
	}
	ext, err := c.ExtendMaintenance(ctx, "billing", 30*time.Minute)
	if err != nil || ext.End.Sub(w.End) != 30*time.Minute {
		t.Fatalf("extend: %+v %v", ext, err)
	}
	if s, err := c.MaintenanceStatus(ctx, "billing"); err != nil || !s.Open {
		t.Fatalf("status: %+v %v", s, err)
	}
	if _, err := c.EndMaintenance(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EndMaintenance(ctx, "billing"); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("end twice: %v", err)
	}
	if _, err := c.Rollout(ctx, 1<<30); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("rollout of no change: %v", err)
	}
	if l, err := c.Instances(ctx, ""); err != nil || len(l.Instances) != 0 {
		t.Fatalf("instances: %+v %v", l, err)
	}
}

// The node keeps the audit trail within its retention by itself: with room
// for 10 records, 40 changes leave at most 10 (plus what one prune tick has
// not reached yet), the newest of them intact.
func TestNodePrunesTheAuditTrail(t *testing.T) {
	_, c := startNode(t, "../examples/schema.yaml", func(cfg *node.Config) {
		cfg.AuditRetention = kv.Retention{MaxRecords: 10}
		cfg.PruneEvery = 50 * time.Millisecond
	})
	ctx := context.Background()
	for i := range 40 {
		if _, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Value: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := c.Audit(ctx, "", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Records) <= 10 {
			if len(a.Records) == 0 || a.Records[0].Changes[0].New != float64(40) {
				t.Fatalf("the newest record is gone: %+v", a.Records)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d audit records after 10 s, retention 10", len(a.Records))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

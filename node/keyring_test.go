package node_test

import (
	"bytes"
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
	"cfgcluster/node"
	"cfgcluster/seal"
)

// A secret set through the API is in neither the member's bbolt file, nor
// its WAL, nor a snapshot saved through the API; a value that is not
// sensitive is in all three (so the scan would find the secret there).
func TestSecretsSealedAtRest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, c := startNode(t, "../examples/schema.yaml", func(cfg *node.Config) { cfg.DataDir = dir })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const secret, clear = "s3cret-9f2c71aa", "plain-4be01d9c"
	if _, err := c.Set(ctx, "db.password", api.SetRequest{Text: str(secret)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "site.banner", api.SetRequest{Text: str(clear)}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if _, err := c.Snapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"snapshot": snap.Bytes()}
	filepath.WalkDir(filepath.Join(dir, "member"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".wal") || filepath.Base(path) == "db") {
			b, _ := os.ReadFile(path)
			files[strings.TrimPrefix(path, dir)] = b
		}
		return nil
	})
	if len(files) < 3 {
		t.Fatalf("found %d files to scan", len(files))
	}
	for name, b := range files {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret in clear", name)
		}
		if !bytes.Contains(b, []byte(clear)) && (name == "snapshot" || filepath.Base(name) == "db") {
			t.Errorf("%s does not hold the value in clear either: the scan proves nothing", name)
		}
	}
	// The keyring it made is beside the data directory, not in it.
	if _, err := os.Stat(node.KeyringFile(dir)); err != nil || strings.HasPrefix(node.KeyringFile(dir), dir+"/") {
		t.Fatalf("keyring %s: %v", node.KeyringFile(dir), err)
	}
	// The value reads back as before: redacted for the API.
	if v, err := c.Get(ctx, "db.password", 0); err != nil || v.Value != api.Redacted {
		t.Fatalf("get: %+v %v", v, err)
	}
}

// The keys API: status counts what each key seals, rotation for a prefix,
// an export refused while a value of the prefix is sealed with a wider key
// and given once reencrypt has moved it, each audited; and a node whose
// keyring lacks the cluster's key-encryption key refuses to start.
func TestEncryptionKeysAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n, c := startNode(t, "../examples/schema.yaml", func(cfg *node.Config) { cfg.DataDir = dir })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Set(ctx, "db.password", api.SetRequest{Text: str("one")}); err != nil {
		t.Fatal(err)
	}
	st, err := c.EncryptionKeys(ctx)
	if err != nil || len(st.Keys) != 1 || st.Keys[0].Values != 1 || !st.Keys[0].Primary || st.Keys[0].Prefix != "" {
		t.Fatalf("status: %+v %v", st, err)
	}
	first := st.Keys[0].ID
	k, err := c.RotateKey(ctx, api.RotateKeyRequest{Prefix: "db.", Comment: "db team's own key"})
	if err != nil || k.Prefix != "db." {
		t.Fatalf("rotate: %+v %v", k, err)
	}
	if _, err := c.ExportKeys(ctx, api.ExportKeysRequest{Prefix: "db."}); cfgerr.CodeOf(err) != cfgerr.FailedPrecondition || !strings.Contains(err.Error(), first) {
		t.Fatalf("export before reencrypt: %v", err)
	}
	r, err := c.Reencrypt(ctx, api.ReencryptRequest{})
	if err != nil || r.Resealed != 1 {
		t.Fatalf("reencrypt: %+v %v", r, err)
	}
	raw, err := c.ExportKeys(ctx, api.ExportKeysRequest{Prefix: "db."})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := seal.ParseKeyring(raw)
	if err != nil || len(ring.Keys) != 1 || ring.Keys[0].ID != k.ID {
		t.Fatalf("exported: %v %v", ring, err)
	}
	recs, _ := c.Audit(ctx, "", 0, 0)
	var actions []string
	for _, rec := range recs.Records {
		if rec.Action == "keys" {
			actions = append(actions, rec.Comment)
		}
	}
	if len(actions) != 3 {
		t.Fatalf("audited key operations: %q", actions)
	}
	if _, err := c.RotateKey(ctx, api.RotateKeyRequest{Prefix: "DB"}); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("a bad prefix: %v", err)
	}

	// Another node on this etcd, with a keyring of its own, refuses to start.
	cred, err := auth.ReadEtcdCredential(node.EtcdCredentialFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.keyring")
	own := seal.NewKEKRing()
	if err := seal.WriteKeyring(other, own); err != nil {
		t.Fatal(err)
	}
	_, err = node.Start(ctx, node.Config{EtcdEndpoints: n.ClientURLs(), EtcdUser: cred.User + ":" + cred.Password, APIAddr: "127.0.0.1:0", EncryptionKeyring: other, DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "does not hold") || !strings.Contains(err.Error(), own.Keys[0].ID) && !strings.Contains(err.Error(), "kek-") {
		t.Fatalf("a node with another keyring: %v", err)
	}
}

// A sensitive value is shown in clear only to a caller with read-sensitive
// on the key, and only once the read is in the audit trail.
func TestRevealNeedsReadSensitive(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := c.Set(ctx, "db.password", api.SetRequest{Text: str("hunter2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutRole(ctx, api.Role{Name: "dba", Grants: []api.Grant{{Verbs: []string{"read-sensitive"}, Prefix: "db."}}}); err != nil {
		t.Fatal(err)
	}
	token := func(name string, roles ...string) *api.Client {
		tok, err := c.CreateToken(ctx, api.TokenRequest{Name: name, Subject: name, Roles: roles})
		if err != nil {
			t.Fatal(err)
		}
		return api.NewClient(n.APIURL(), tok.Token)
	}
	for _, who := range []*api.Client{token("ed", "editor"), token("vi", "viewer")} {
		if _, err := who.Reveal(ctx, "db.password", 0, ""); cfgerr.CodeOf(err) != cfgerr.Forbidden || !strings.Contains(err.Error(), "read-sensitive") {
			t.Fatalf("reveal without read-sensitive: %v", err)
		}
	}
	dba := token("dana", "dba")
	v, err := dba.Reveal(ctx, "db.password", 0, "rotating the app's pool")
	if err != nil || v.Value != "hunter2" {
		t.Fatalf("reveal: %+v %v", v, err)
	}
	if v, _ := dba.Get(ctx, "db.password", 0); v.Value != api.Redacted {
		t.Fatalf("a plain get shows %v", v.Value)
	}
	recs, err := c.Audit(ctx, "db.password", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var reveals []api.AuditRecord
	for _, rec := range recs.Records {
		if rec.Action == "reveal" {
			reveals = append(reveals, rec)
		}
	}
	if len(reveals) != 1 || reveals[0].Actor != "dana" || reveals[0].Comment != "rotating the app's pool" || reveals[0].Changes[0].OldRevision != r.Revision {
		t.Fatalf("reveals in the audit trail: %+v", reveals)
	}
}

// A stream that asks for proposals gets each proposal made and decided
// under its prefix (and readable by its caller), live, beside the value
// changes; one that does not ask gets only the changes.
func TestProposalsOnTheStream(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := c.CreateToken(ctx, api.TokenRequest{Name: "bob", Subject: "bob", Roles: []string{"approver"}})
	if err != nil {
		t.Fatal(err)
	}
	bob := api.NewClient(n.APIURL(), tok.Token)
	type seen struct {
		proposal *api.Proposal
		batch    *api.WatchBatch
	}
	watch := func(opts ...api.WatchOption) (chan seen, chan struct{}) { // through the Go client
		got, opened := make(chan seen, 16), make(chan struct{})
		opts = append(opts, api.OnOpen(func() { close(opened) }))
		go c.Watch(ctx, "payments.", 0, func(b api.WatchBatch) error { got <- seen{batch: &b}; return nil }, nil, opts...)
		return got, opened
	}
	var with0 chan seen
	proposals := make(chan seen, 16)
	with0 = proposals
	_, openedWith := watch(api.WithProposals(func(p *api.Proposal) error {
		if p != nil {
			proposals <- seen{proposal: p}
		}
		return nil
	}))
	// A stream that does not ask, read raw: the event names it is sent.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.APIURL()+"/v1/watch?prefix=", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("raw stream: %v", err)
	}
	defer resp.Body.Close()
	without := make(chan string, 16)
	go api.ReadEvents(resp.Body, func(event string, d []byte) error {
		without <- event + " " + string(d)
		return nil
	})
	<-openedWith
	r, err := c.Set(ctx, "payments.live_mode", api.SetRequest{Text: str("true")})
	if err != nil || r.Proposal == nil {
		t.Fatalf("set: %+v %v", r, err)
	}
	if _, err := bob.Decide(ctx, r.Proposal.ID, "approve", "ok"); err != nil {
		t.Fatal(err)
	}
	next := func(ch chan seen) seen {
		select {
		case s := <-ch:
			return s
		case <-ctx.Done():
			t.Fatal("no event")
			return seen{}
		}
	}
	// The proposals stream: the proposal pending, then applied (its
	// change arrives as a batch around it).
	var states []string
	for len(states) < 2 {
		if s := next(with0); s.proposal != nil {
			if s.proposal.ID != r.Proposal.ID {
				t.Fatalf("another proposal: %+v", s.proposal)
			}
			states = append(states, s.proposal.State)
		}
	}
	if states[0] != "pending" || states[1] != "applied" {
		t.Fatalf("proposal states on the stream: %v", states)
	}
	// The stream that did not ask: once the proposal was published (the
	// other stream has it), a later change reaches it with nothing but
	// changes before it.
	if _, err := c.Set(ctx, "log.level", api.SetRequest{Text: str("warn")}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-without:
			if !strings.HasPrefix(ev, "change ") {
				t.Fatalf("a stream that did not ask for proposals was sent %s", ev)
			}
			if strings.Contains(ev, `"log.level"`) {
				return
			}
		case <-ctx.Done():
			t.Fatal("the later change never reached the stream that did not ask")
		}
	}
}

// A proposed schema needs approve on every key: an approver for one prefix
// may neither approve nor reject it; its records are in the audit trail.
func TestSchemaProposalNeedsApproveOnEverything(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	doc, err := os.ReadFile("../examples/schema.yaml")
	if err != nil {
		t.Fatal(err)
	}
	guarded := "approval: required\n" + string(doc)
	if _, err := c.ApplySchema(ctx, api.SchemaRequest{Document: guarded}); err != nil {
		t.Fatal(err)
	}
	r, err := c.ApplySchema(ctx, api.SchemaRequest{Document: guarded + "\n# a comment\n"})
	if err != nil || r.Proposal == nil {
		t.Fatalf("a schema change: %+v %v", r, err)
	}
	if err := c.PutRole(ctx, api.Role{Name: "pay-approver", Grants: []api.Grant{{Verbs: []string{"read", "approve"}, Prefix: "payments."}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(ctx, api.TokenRequest{Name: "pat", Subject: "pat", Roles: []string{"pay-approver"}})
	if err != nil {
		t.Fatal(err)
	}
	pat := api.NewClient(n.APIURL(), tok.Token)
	for _, d := range []string{"approve", "reject"} {
		if _, err := pat.Decide(ctx, r.Proposal.ID, d, "looks fine"); cfgerr.CodeOf(err) != cfgerr.Forbidden {
			t.Fatalf("%s of a schema proposal by an approver of payments. only: %v", d, err)
		}
	}
	if _, err := pat.Proposal(ctx, r.Proposal.ID); cfgerr.CodeOf(err) != cfgerr.Forbidden {
		t.Fatalf("a schema proposal shown to a reader of payments. only: %v", err)
	}
	recs, err := c.Audit(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	proposed := false
	for _, rec := range recs.Records {
		proposed = proposed || rec.Action == "propose" && rec.Proposal == r.Proposal.ID
	}
	if !proposed {
		t.Fatalf("no record of the schema proposal in the audit trail: %+v", recs.Records)
	}
}

package kv_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/seal"
)

// sealedWith returns the data key id that seals key's stored value ("" if
// it is stored in clear), failing if the plaintext is in etcd's value.
func sealedWith(t *testing.T, s *kv.Store, c *clientv3.Client, key, plaintext string) string {
	t.Helper()
	resp, err := c.Get(ctx(t), s.Layout().ValueKey(key))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	if plaintext != "" && bytes.Contains(resp.Kvs[0].Value, []byte(plaintext)) {
		t.Fatalf("%s is stored in clear: %s", key, resp.Kvs[0].Value)
	}
	var env struct {
		Sealed *seal.Box `json:"x"`
	}
	json.Unmarshal(resp.Kvs[0].Value, &env)
	if env.Sealed == nil {
		return ""
	}
	return env.Sealed.Key
}

// setSecret writes a sensitive value (set's comment would hold it).
func setSecret(t *testing.T, s *kv.Store, key, v string) *kv.Result {
	t.Helper()
	r, err := s.Apply(ctx(t), kv.Meta{Actor: "alice", Action: kv.ActionSet}, []kv.Write{{Key: key, Text: &v}})
	if err != nil {
		t.Fatalf("set %s: %v", key, err)
	}
	return r
}

func TestSensitiveValuesAreSealed(t *testing.T) {
	s, c := newStore(t)
	setSecret(t, s, "db.password", "hunter2")
	first := sealedWith(t, s, c, "db.password", "hunter2")
	if !strings.HasPrefix(first, "dk-") {
		t.Fatalf("db.password is not sealed: %q", first)
	}
	if e, err := s.Get(ctx(t), "db.password", 0); err != nil || e.Value != "hunter2" || !e.Sensitive {
		t.Fatalf("get: %+v %v", e, err)
	}
	// A key that is not sensitive stays in clear.
	set(t, s, "log.level", "warn")
	if id := sealedWith(t, s, c, "log.level", ""); id != "" {
		t.Fatalf("log.level sealed with %s", id)
	}
	// History and rollback open what they read, and rollback seals again.
	r := setSecret(t, s, "db.password", "correct-horse")
	h, err := s.History(ctx(t), "db.password", 10)
	if err != nil || len(h) != 2 || h[1].Value != "hunter2" {
		t.Fatalf("history: %+v %v", h, err)
	}
	if _, err := s.Rollback(ctx(t), kv.Meta{Actor: "alice"}, "db.password", r.Revision-1); err != nil {
		t.Fatal(err)
	}
	sealedWith(t, s, c, "db.password", "hunter2")
	if e, _ := s.Get(ctx(t), "db.password", 0); e.Value != "hunter2" {
		t.Fatalf("after rollback: %v", e.Value)
	}
	// Another node with the cluster's keyring opens it.
	if e, err := kv.New(c, kv.WithProvider(kek)).Get(ctx(t), "db.password", 0); err != nil || e.Value != "hunter2" {
		t.Fatalf("another node: %+v %v", e, err)
	}
}

// A process without the key gets a clear sealed error naming the key, never
// the value and never a default in its place; nothing it refuses is written.
func TestSealedWithoutTheKey(t *testing.T) {
	s, c := newStore(t)
	setSecret(t, s, "db.password", "hunter2")
	id := sealedWith(t, s, c, "db.password", "hunter2")
	stranger, _ := seal.NewLocal(mustRing(t, seal.NewKey("kek", "", time.Now())))
	for name, other := range map[string]*kv.Store{
		"no keyring":        kv.New(c),
		"another keyring":   kv.New(c, kv.WithProvider(stranger)),
		"a service keyring": nil,
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			if other == nil {
				kvs, _ := c.Get(ctx(t), s.Layout().ValueKey("db.password"))
				sch, _, _, _ := s.Schema(ctx(t))
				_, err = kv.NewLayout("").WithOpener(mustRing(t)).Decode(sch, kvs.Kvs[0])
			} else {
				_, err = other.Get(ctx(t), "db.password", 0)
			}
			e := cfgerr.First(err)
			if e == nil || e.Code != cfgerr.Sealed || !strings.Contains(err.Error(), "db.password") || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("%v", err)
			}
			if !strings.Contains(err.Error(), id) && !strings.Contains(err.Error(), "kek-") {
				t.Fatalf("the error names no key: %v", err)
			}
		})
	}
	before := rev(t, c)
	if _, err := kv.New(c).Apply(ctx(t), kv.Meta{Actor: "a"}, []kv.Write{{Key: "db.password", Text: text("x")}}); cfgerr.CodeOf(err) != cfgerr.Sealed {
		t.Fatalf("a write without a keyring: %v", err)
	}
	if after := rev(t, c); after != before {
		t.Fatalf("a refused write wrote: revision %d → %d", before, after)
	}
}

func TestTamperedSealRefused(t *testing.T) {
	s, c := newStore(t)
	setSecret(t, s, "db.password", "hunter2")
	ek := s.Layout().ValueKey("db.password")
	resp, _ := c.Get(ctx(t), ek)
	var env map[string]any
	json.Unmarshal(resp.Kvs[0].Value, &env)
	box := env["x"].(map[string]any)
	d, err := base64.StdEncoding.DecodeString(box["d"].(string))
	if err != nil {
		t.Fatal(err)
	}
	d[2] ^= 1 // one bit of the ciphertext
	box["d"] = base64.StdEncoding.EncodeToString(d)
	b, _ := json.Marshal(env)
	if _, err := c.Put(ctx(t), ek, string(b)); err != nil {
		t.Fatal(err)
	}
	_, err = kv.New(c, kv.WithProvider(kek)).Get(ctx(t), "db.password", 0)
	if cfgerr.CodeOf(err) != cfgerr.Sealed || !strings.Contains(err.Error(), "tampered") {
		t.Fatalf("tampered: %v", err)
	}
}

// Rotation: a new primary seals new values on every node at once (a node
// that has not seen the rotation fails its commit's compare and retries
// with the new key); reencrypt moves every value to the newest key while
// writers race it, losing none; a scoped key is exported alone.
func TestRotateReencryptExport(t *testing.T) {
	s, c := newStore(t)
	other := kv.New(c, kv.WithProvider(kek))
	setSecret(t, s, "db.password", "v0")
	setSecret(t, other, "db.password", "v1") // other now holds the table
	first := sealedWith(t, s, c, "db.password", "v1")

	k, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, "db.")
	if err != nil || k.Prefix != "db." || !k.Primary {
		t.Fatalf("rotate: %+v %v", k, err)
	}
	// The value under db. is still sealed with the key for every name: a
	// service given it could open values outside db.
	if _, err := s.ExportKeys(ctx(t), kv.Meta{Actor: "admin"}, "db."); cfgerr.CodeOf(err) != cfgerr.FailedPrecondition || !strings.Contains(err.Error(), first) {
		t.Fatalf("export while a value is sealed with a wider key: %v", err)
	}
	setSecret(t, other, "db.password", "v2")
	if id := sealedWith(t, s, c, "db.password", "v2"); id != k.ID {
		t.Fatalf("a node that had not seen the rotation sealed with %s, not %s", id, k.ID)
	}
	if _, err := s.ExportKeys(ctx(t), kv.Meta{Actor: "admin"}, "log."); cfgerr.CodeOf(err) != cfgerr.FailedPrecondition {
		t.Fatalf("export of a prefix with no key of its own: %v", err)
	}
	sch, _, _, _ := s.Schema(ctx(t))

	// Writers race a rotation for every key and the re-encryption.
	if _, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, "db."); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var last [2]string
	for w, st := range []*kv.Store{s, other} {
		wg.Go(func() {
			for i := range 30 {
				v := fmt.Sprintf("w%d-%d", w, i)
				if _, err := st.Apply(ctx(t), kv.Meta{Actor: "w"}, []kv.Write{{Key: "db.password", Text: &v}}); err != nil {
					t.Errorf("write %s: %v", v, err)
					return
				}
				last[w] = v
			}
		})
	}
	var progress []int
	n, err := s.Reencrypt(ctx(t), kv.Meta{Actor: "admin"}, func(done, left int) { progress = append(progress, done) })
	wg.Wait()
	if err != nil {
		t.Fatalf("reencrypt: %v", err)
	}
	st, err := s.Keys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var primary kv.KeyInfo
	for _, k := range st.Keys {
		if k.Primary && k.Prefix == "db." {
			primary = k
		}
		if k.ID == first && k.Values != 0 {
			t.Fatalf("the first key still seals %d values after reencrypt", k.Values)
		}
	}
	if primary.Values != 1 || st.Plain != 0 {
		t.Fatalf("status: %+v (reencrypt re-sealed %+v, progress %v)", st, n, progress)
	}
	e, err := s.Get(ctx(t), "db.password", 0)
	if err != nil || (e.Value != last[0] && e.Value != last[1]) {
		t.Fatalf("after racing writers: %v %v, last writes %v", e, err, last)
	}
	// Exported, the db. keys open db.password and nothing else is given.
	ring, err := s.ExportKeys(ctx(t), kv.Meta{Actor: "admin"}, "db.")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ring.Keys {
		if k.Prefix != "db." {
			t.Fatalf("export of db. holds key %s for %q", k.ID, k.Prefix)
		}
	}
	kvs, _ := c.Get(ctx(t), s.Layout().ValueKey("db.password"))
	if e, err := kv.NewLayout("").WithOpener(ring).Decode(sch, kvs.Kvs[0]); err != nil || e.Value != last[0] && e.Value != last[1] {
		t.Fatalf("a service's keyring: %+v %v", e, err)
	}
	// Reencrypt with nothing to do does nothing.
	before := rev(t, c)
	if n, err := s.Reencrypt(ctx(t), kv.Meta{Actor: "admin"}, nil); err != nil || n != (kv.Resealed{}) || rev(t, c) != before {
		t.Fatalf("an idle reencrypt: %+v %v", n, err)
	}
	if _, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, "DB"); cfgerr.CodeOf(err) != cfgerr.Invalid {
		t.Fatalf("a bad prefix: %v", err)
	}
}

func mustRing(t *testing.T, keys ...seal.Key) *seal.Keyring {
	t.Helper()
	r, err := seal.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The audit trail keeps a sensitive key's values sealed, not redacted:
// after compaction its history, its value at a revision and a rollback to
// one still work for whoever holds the keys, and the trail holds no
// plaintext.
func TestSealedHistoryPastCompaction(t *testing.T) {
	s, c := newStore(t)
	first := setSecret(t, s, "db.password", "hunter2")
	setSecret(t, s, "db.password", "correct-horse")
	etcdtest.Compact(t, c)
	e, err := s.Get(ctx(t), "db.password", first.Revision)
	if err != nil || e.Value != "hunter2" || !e.Sensitive {
		t.Fatalf("value at a compacted revision: %+v %v", e, err)
	}
	if _, err := s.Rollback(ctx(t), kv.Meta{Actor: "alice"}, "db.password", first.Revision); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ctx(t), "db.password", 0); e.Value != "hunter2" {
		t.Fatalf("rolled back to %v", e.Value)
	}
	trail, err := c.Get(ctx(t), s.Layout().Prefix()+"v1/audit", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range trail.Kvs {
		if bytes.Contains(kv.Value, []byte("hunter2")) || bytes.Contains(kv.Value, []byte("correct-horse")) {
			t.Fatalf("%s holds a secret in clear", kv.Key)
		}
	}
	if _, err := kv.New(c).Get(ctx(t), "db.password", first.Revision); cfgerr.CodeOf(err) != cfgerr.Sealed {
		t.Fatalf("a store without the keys, past compaction: %v", err)
	}
}

// A data key is retired only once nothing needs it: never the newest of
// its scope, never while a value, an audit record or a proposal is sealed
// with it (each use named), and never an unknown one.
func TestRetireKey(t *testing.T) {
	s, c := newStore(t)
	r1 := setSecret(t, s, "db.password", "hunter2")
	setSecret(t, s, "db.password", "swordfish")
	st, _ := s.Keys(ctx(t))
	first := st.Keys[0].ID
	code(t, s.RetireKey(ctx(t), kv.Meta{Actor: "admin"}, first), cfgerr.FailedPrecondition, "newest")
	if _, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, ""); err != nil {
		t.Fatal(err)
	}
	code(t, s.RetireKey(ctx(t), kv.Meta{Actor: "admin"}, first), cfgerr.FailedPrecondition, "1 value(s)")
	before, err := s.History(ctx(t), "db.password", 0)
	if err != nil {
		t.Fatal(err)
	}
	indexed, _ := runIndex(t, c) // follows the records rewritten in place
	// Reencrypt re-seals the value, then the audit trail's sealed values
	// (the records and index entries of both writes, and of the re-sealing
	// of the value itself) in place: the old key seals nothing any more.
	n, err := s.Reencrypt(ctx(t), kv.Meta{Actor: "admin"}, nil)
	if err != nil || n.Values != 1 || n.Audit < 5 {
		t.Fatalf("re-sealed %+v, %v", n, err)
	}
	if err := s.RetireKey(ctx(t), kv.Meta{Actor: "admin"}, first); err != nil {
		t.Fatalf("retiring the rotated key after reencrypt: %v", err)
	}
	// The history is whole, at the same revisions; the first value reads
	// back past compaction, from its record, sealed with the new key.
	etcdtest.Compact(t, c)
	after, err := s.History(ctx(t), "db.password", 0)
	if err != nil || len(after) != len(before)+1 { // and the re-sealing's own change
		t.Fatalf("history: %d entries before, %d after, %v", len(before), len(after), err)
	}
	for i := range before {
		if after[i+1].Revision != before[i].Revision {
			t.Fatalf("entry %d moved from revision %d to %d", i, before[i].Revision, after[i+1].Revision)
		}
	}
	if e, err := s.Get(ctx(t), "db.password", r1.Revision); err != nil || e.Value != "hunter2" {
		t.Fatalf("the first value after retiring its key: %+v %v", e, err)
	}
	for _, st := range []*kv.Store{s, indexed} {
		recs, err := st.Audit(ctx(t), kv.AuditQuery{Key: "db.password"})
		if err != nil || len(recs) != len(after) || recs[len(recs)-1].Revision != r1.Revision {
			t.Fatalf("the key's records: %d, %v", len(recs), err)
		}
	}
	code(t, s.RetireKey(ctx(t), kv.Meta{Actor: "admin"}, "dk-none"), cfgerr.NotFound, "no data key dk-none")
	// A key that sealed nothing, replaced by a newer one of its scope, goes.
	unused, _ := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, "web.")
	if _, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, "web."); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireKey(ctx(t), kv.Meta{Actor: "admin"}, unused.ID); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Keys(ctx(t))
	for _, k := range st.Keys {
		if k.ID == unused.ID {
			t.Fatal("a retired key is still listed")
		}
	}
	if e, err := s.Get(ctx(t), "db.password", 0); err != nil || e.Value != "swordfish" {
		t.Fatalf("after retiring: %+v %v", e, err)
	}
}

// Rotating the key-encryption key: a node given a keyring with a new one
// rewraps every data key with it; nodes holding only the new one then read
// every value, and nodes holding only the old one refuse, naming it.
func TestRewrapKeys(t *testing.T) {
	old := seal.NewKey("kek", "", time.Now())
	oldRing := mustRing(t, old)
	oldKEK, _ := seal.NewLocal(oldRing)
	_, c := newStore(t)
	s := kv.New(c, kv.WithProvider(oldKEK))
	if _, err := s.SetSchema(ctx(t), kv.Meta{Actor: "admin"}, exampleSchema(t)); err != nil {
		t.Fatal(err)
	}
	setSecret(t, s, "db.password", "hunter2")
	if _, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, "db."); err != nil {
		t.Fatal(err)
	}
	next := seal.NewKey("kek", "", time.Now().Add(time.Second))
	both, err := oldRing.Add(next)
	if err != nil {
		t.Fatal(err)
	}
	bothKEK, _ := seal.NewLocal(both)
	n, err := kv.New(c, kv.WithProvider(bothKEK)).RewrapKeys(ctx(t), kv.Meta{Actor: "admin"})
	if err != nil || n != 2 {
		t.Fatalf("rewrap: %d %v", n, err)
	}
	newOnly, _ := seal.NewLocal(mustRing(t, next))
	fresh := kv.New(c, kv.WithProvider(newOnly))
	if e, err := fresh.Get(ctx(t), "db.password", 0); err != nil || e.Value != "hunter2" {
		t.Fatalf("with the new key-encryption key alone: %+v %v", e, err)
	}
	st, _ := fresh.Keys(ctx(t))
	for _, k := range st.Keys {
		if k.KEK != next.ID {
			t.Fatalf("data key %s still wrapped by %s", k.ID, k.KEK)
		}
	}
	if err := kv.New(c, kv.WithProvider(oldKEK)).CheckKeys(ctx(t)); err == nil || !strings.Contains(err.Error(), next.ID) {
		t.Fatalf("a node with the old keyring alone: %v", err)
	}
	if n, err := kv.New(c, kv.WithProvider(bothKEK)).RewrapKeys(ctx(t), kv.Meta{Actor: "admin"}); err != nil || n != 0 {
		t.Fatalf("a second rewrap: %d %v", n, err)
	}
}

// Re-encryption on an etcd with Debian's defaults (128 operations and 1.5
// MiB a request): large values go in smaller transactions, and each re-seal
// keeps the value sealed in the audit trail, so the value at its revision
// reads past compaction.
func TestReencryptWithinEtcdDefaults(t *testing.T) {
	_, c := etcdtest.Start(t, func(cfg *embed.Config) { cfg.MaxTxnOps, cfg.MaxRequestBytes = 128, 1536*1024 })
	s := kv.New(c, kv.WithProvider(kek))
	doc := "keys:\n"
	for i := range 6 {
		doc += fmt.Sprintf("  big.s%d: {type: string, sensitive: true}\n", i)
	}
	if _, err := s.SetSchema(ctx(t), kv.Meta{Actor: "admin"}, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 300<<10)
	for i := range 6 {
		setSecret(t, s, fmt.Sprintf("big.s%d", i), fmt.Sprint(i)+big)
	}
	if _, err := s.RotateKey(ctx(t), kv.Meta{Actor: "admin"}, ""); err != nil {
		t.Fatal(err)
	}
	n, err := s.Reencrypt(ctx(t), kv.Meta{Actor: "admin"}, nil)
	if err != nil || n.Values != 6 || n.Audit == 0 {
		t.Fatalf("reencrypt: %+v %v", n, err)
	}
	resealed := rev(t, c)
	setSecret(t, s, "big.s0", "later")
	etcdtest.Compact(t, c)
	if e, err := s.Get(ctx(t), "big.s0", resealed); err != nil || e.Value != "0"+big {
		t.Fatalf("big.s0 at the re-seal's revision, compacted: %v", err)
	}
}

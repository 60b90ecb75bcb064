package watch_test

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/watch"
)

// A service opens the sensitive values its keyring holds the keys of; one
// it cannot open reads as a Sealed error, in Lookup and in its event, and
// the schema default is never served in its place, nor is the secret
// logged.
func TestSealedValues(t *testing.T) {
	e := setup(t)
	doc := "keys:\n  billing.api_key: {type: string, sensitive: true, default: fallback}\n  web.secret: {type: string, sensitive: true}\n  log.level: {type: string, default: info}\n"
	if _, err := e.store.SetSchema(bg(t), kv.Meta{Actor: "test"}, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RotateKey(bg(t), kv.Meta{Actor: "admin"}, "billing."); err != nil {
		t.Fatal(err)
	}
	e.set(t, "billing.api_key", "sk-one", "web.secret", "web-one")
	core, logs := observer.New(zapcore.DebugLevel)
	billing := newClient(t, e.etcd, e.keyring(t, "billing."), watch.WithLogger(zap.New(core)))
	if v, err := billing.Lookup("billing.api_key"); err != nil || v.Value != "sk-one" {
		t.Fatalf("its own secret: %+v %v", v, err)
	}
	if billing.String("billing.api_key", "") != "sk-one" {
		t.Fatal("a cached read of its own secret")
	}
	sealed := func(c *watch.Client, key string) {
		t.Helper()
		v, err := c.Lookup(key)
		if cfgerr.CodeOf(err) != cfgerr.Sealed || !strings.Contains(err.Error(), key) || v.Value != nil {
			t.Fatalf("%s: %+v %v", key, v, err)
		}
	}
	sealed(billing, "web.secret")
	if got := billing.String("web.secret", "mine"); got != "mine" {
		t.Fatalf("a typed read of a sealed value: %q", got)
	}

	bare := newClient(t, e.etcd, watch.WithLogger(zap.New(core)))
	sealed(bare, "billing.api_key") // never the schema default "fallback"
	if bare.String("log.level", "") != "info" {
		t.Fatal("a client with no keyring cannot read what is not sealed")
	}
	rec := &recorder{}
	bare.Subscribe("billing.*", rec)
	e.set(t, "billing.api_key", "sk-two")
	eventually(t, "the event", func() bool { b, _ := rec.Snapshot(); return len(b) == 1 })
	b, _ := rec.Snapshot()
	if ev := b[0].Events[0]; cfgerr.CodeOf(ev.Err) != cfgerr.Sealed || ev.New != nil || ev.Kind != watch.Update {
		t.Fatalf("event: %+v", ev)
	}
	sealed(bare, "billing.api_key")
	eventually(t, "the new value", func() bool { return billing.String("billing.api_key", "") == "sk-two" })

	// The key's value deleted: the default again, for every client.
	if _, err := e.store.Apply(bg(t), kv.Meta{}, []kv.Write{{Key: "billing.api_key", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the default after a delete", func() bool { return bare.String("billing.api_key", "") == "fallback" })
	for _, l := range logs.All() {
		if s := fmt.Sprint(l.Message, l.ContextMap()); strings.Contains(s, "sk-") || strings.Contains(s, "web-one") {
			t.Fatalf("a log line holds a secret: %s", s)
		}
	}
	if len(billing.Rejections()) != 0 || len(bare.Rejections()) != 0 {
		t.Fatalf("sealed values reported as rejected: %+v %+v", billing.Rejections(), bare.Rejections())
	}
}

// A requires_restart value the client cannot open is still a pending
// restart: it changed, though the client cannot say to what.
func TestSealedPendingRestart(t *testing.T) {
	e := setup(t)
	c := newClient(t, e.etcd)
	e.set(t, "db.password", "hunter2")
	eventually(t, "a pending restart", c.RestartRequired)
	if p := c.PendingRestart(); len(p) != 1 || p[0].Key != "db.password" || p[0].Value != nil {
		t.Fatalf("pending: %+v", p)
	}
}

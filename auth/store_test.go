package auth_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"cfgcluster/auth"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// A token made through one store (one node) works on another at once, even
// before that store's watch brings it: a name it does not know is read from
// etcd. One it does not know and etcd has not is refused.
func TestTokenMadeElsewhereWorksAtOnce(t *testing.T) {
	_, c := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := kv.New(c)
	here, there := auth.NewStore(c, store, zap.NewNop()), auth.NewStore(c, store, zap.NewNop())
	defer there.Close()
	for _, s := range []*auth.Store{here, there} {
		if err := s.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	here.Close() // its watch stops: only a read can bring it the token
	token, _, err := there.CreateToken(ctx, kv.Meta{Actor: "test"}, auth.Token{Name: "ci", Roles: []string{"editor"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := here.Authenticate(ctx, token)
	if err != nil || p.Subject != "ci" || !p.Can(auth.Write, "log.level") {
		t.Fatalf("a token made elsewhere: %+v %v", p, err)
	}
	forged := token[:len(token)-4] + "AAAA"
	if _, err := here.Authenticate(ctx, forged); err == nil {
		t.Fatal("a forged secret for a fetched name was accepted")
	}
	if _, err := here.Authenticate(ctx, "cfgt1_nobody_"+token[len(token)-43:]); err == nil {
		t.Fatal("an unknown name was accepted")
	}
}

// On an idle cluster the store's watch is answered (progress), so it is
// never taken for stalled and replaced, which would list the auth range
// again and warn every few seconds.
func TestIdleWatchIsKept(t *testing.T) {
	_, c := etcdtest.Start(t)
	core, logs := observer.New(zap.WarnLevel)
	s := auth.NewStore(c, kv.New(c), zap.New(core))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // past watchSilence (3 s), with no write anywhere
	if n := logs.FilterMessageSnippet("stopped").Len(); n > 0 {
		t.Fatalf("the watch of an idle cluster was replaced %d times: %v", n, logs.All()[0].ContextMap())
	}
}

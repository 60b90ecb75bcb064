package auth_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

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

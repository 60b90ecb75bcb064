package node

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// ?wait= honours its deadline even when etcd cannot be reached.
func TestWaitRolloutHonoursItsDeadline(t *testing.T) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := &Node{client: c, store: kv.New(c), log: zap.NewNop()}
	done := make(chan error, 1)
	go func() {
		_, err := n.waitRollout(context.Background(), &kv.Result{Revision: 5, Changes: []kv.Change{{Key: "log.level"}}}, 300*time.Millisecond)
		done <- err
	}()
	select {
	case err := <-done:
		if cfgerr.CodeOf(err) != cfgerr.Unavailable {
			t.Fatalf("want unavailable, got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("?wait= ignored its deadline: still waiting on an unreachable etcd")
	}
}

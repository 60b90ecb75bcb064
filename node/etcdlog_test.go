package node

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// etcd's log of a raft request never carries the simple token an
// Authenticate hands out (etcd prints it in "apply request took too long").
func TestEtcdLogRedactsSimpleTokens(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	lg := zap.New(core).WithOptions(zap.WrapCore(redactTokens))
	req := "header:<ID:7 > authenticate:<name:cfgnode.n0 simple_token:KJhqXpcbTwdLOQzp.42>"
	lg.Warn("apply request took too long", zap.String("request", req))
	lg.With(zap.String("request", req)).Warn("failed to apply request " + req)
	for _, e := range logs.All() {
		all := e.Message
		for k, v := range e.ContextMap() {
			all += " " + k + "=" + v.(string)
		}
		if strings.Contains(all, "KJhqXpcbTwdLOQzp") || !strings.Contains(all, "simple_token:<redacted>") {
			t.Fatalf("logged: %s", all)
		}
	}
	if len(logs.All()) != 2 {
		t.Fatalf("%d entries", len(logs.All()))
	}
}

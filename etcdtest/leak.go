package etcdtest

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs a package's tests and then fails if goroutines are left
// running, ignoring the few that etcd's embedded server and gRPC keep for the
// whole process. Use it as TestMain:
//
//	func TestMain(m *testing.M) { etcdtest.VerifyNoLeaks(m) }
func VerifyNoLeaks(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append([]goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	}, extra...)...)
}

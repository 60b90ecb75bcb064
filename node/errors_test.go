package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"cfgcluster/cfgerr"
)

// A request its client abandoned, or one that fails after its answer
// started, is logged once at debug and gets no second header.
func TestErrorHandlerAbandonedAndStartedRequests(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	n := &Node{log: zap.New(core)}
	fail := func(w http.ResponseWriter, r *http.Request) error {
		return cfgerr.Errorf(cfgerr.Internal, "", "", "etcd: context canceled")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	n.errorHandler(public, zap.NewNop(), fail).ServeHTTP(&statusWriter{ResponseWriter: rec}, httptest.NewRequest("GET", "/v1/audit", nil).WithContext(ctx))
	if rec.Body.Len() != 0 || rec.Code != 200 || logs.FilterLevelExact(zapcore.ErrorLevel).Len() != 0 || logs.Len() != 1 {
		t.Fatalf("abandoned: body %q, %d logs", rec.Body.String(), logs.Len())
	}

	started := func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("partial"))
		return fail(w, r)
	}
	rec = httptest.NewRecorder()
	n.errorHandler(public, zap.NewNop(), started).ServeHTTP(&statusWriter{ResponseWriter: rec}, httptest.NewRequest("GET", "/v1/snapshot", nil))
	if rec.Body.String() != "partial" || logs.FilterLevelExact(zapcore.ErrorLevel).Len() != 0 || logs.Len() != 2 {
		t.Fatalf("started: body %q, logs %v", rec.Body.String(), logs.All())
	}
	// An ordinary failure is still answered and logged.
	rec = httptest.NewRecorder()
	n.errorHandler(public, zap.NewNop(), fail).ServeHTTP(&statusWriter{ResponseWriter: rec}, httptest.NewRequest("GET", "/v1/audit", nil))
	if rec.Code != 500 || logs.FilterLevelExact(zapcore.ErrorLevel).Len() != 1 {
		t.Fatalf("failure: %d, logs %v", rec.Code, logs.All())
	}
}

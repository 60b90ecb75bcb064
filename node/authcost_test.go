package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"cfgcluster/api"
)

// BenchmarkAuthCost measures what identity adds to a request, side by side
// in one run: the same route handlers, in-process (no network), once
// through the node's own handler with a token (authentication, the route's
// policy, the rate limits, the access log, request metrics) and once
// behind none of that, with the caller's principal already in the request.
// It reports each request's p50 and p99; the difference is the cost.
//
//	go test ./node -run '^$' -bench BenchmarkAuthCost -benchtime 20000x -count 3
func BenchmarkAuthCost(b *testing.B) {
	// A real encoder writing JSON (to nowhere): what the access log costs.
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	n, c := startAuthNode(b, func(cfg *Config) {
		cfg.Logger = logger
		cfg.RateReads, cfg.RateWrites = 1<<30, 1<<30 // checked on every request, never reached
	})
	ctx := context.Background()
	if _, err := c.Set(ctx, "log.level", api.SetRequest{Value: "warn"}); err != nil {
		b.Fatal(err)
	}
	token := c.Token
	who, err := n.auth.Authenticate(ctx, token)
	if err != nil {
		b.Fatal(err)
	}
	bare := http.NewServeMux()
	for _, rt := range n.routeTable() {
		if rt.pattern == "GET /v1/keys/{key}" || rt.pattern == "PUT /v1/keys/{key}" {
			h := n.errorHandler(public, nil, rt.handler)
			bare.Handle(rt.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, who)))
			}))
		}
	}
	handlers := map[string]http.Handler{"with-auth": n.srv.Handler, "without": n.guard(bare)}
	levels := []string{"debug", "info", "warn", "error"}
	for _, op := range []string{"cached-get", "validated-write"} {
		for _, mode := range []string{"without", "with-auth"} {
			b.Run(op+"/"+mode, func(b *testing.B) {
				h := handlers[mode]
				lat := make([]time.Duration, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					var req *http.Request
					if op == "cached-get" {
						req = httptest.NewRequest(http.MethodGet, "/v1/keys/log.level", nil)
					} else {
						req = httptest.NewRequest(http.MethodPut, "/v1/keys/log.level", strings.NewReader(fmt.Sprintf(`{"value":%q}`, levels[i%len(levels)])))
						req.Header.Set("Content-Type", "application/json")
					}
					if mode == "with-auth" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					w := httptest.NewRecorder()
					t0 := time.Now()
					h.ServeHTTP(w, req)
					lat[i] = time.Since(t0)
					if w.Code != http.StatusOK {
						b.Fatalf("%s %s: %d %s", op, mode, w.Code, w.Body)
					}
				}
				b.StopTimer()
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
			})
		}
	}
}

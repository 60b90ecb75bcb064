package flags

import (
	"fmt"
	"testing"
)

// BenchmarkEvaluate evaluates a flag through a set, typed as a service
// reads it: a static flag, one targeting rule, and a fractional rollout
// (issue 12's budgets: 50 ns and no allocation, 300 ns, 300 ns).
//
//	go test ./flags -run '^$' -bench BenchmarkEvaluate -benchmem -cpu 1,2
func BenchmarkEvaluate(b *testing.B) {
	set, err := ParseFile([]byte(`{"flags": {
		"static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
		"rule": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		         "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]}},
		"fractional": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
		         "targeting": {"fractional": [["on", 10], ["off", 90]]}}}}`))
	if err != nil || len(set.Problems()) > 0 {
		b.Fatal(err, set.Problems())
	}
	ctx := map[string]any{"targetingKey": "user-1234", "email": "ada@example.com"}
	for _, key := range []string{"static", "rule", "fractional"} {
		b.Run(key, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, d := As(set.Evaluate(key, ctx), false); d.ErrorCode != "" {
						panic(fmt.Sprint(d))
					}
				}
			})
		})
	}
}

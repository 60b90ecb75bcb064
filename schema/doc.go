// Package schema defines cfgcluster's configuration schema: typed keys with
// defaults, ranges, enums, patterns and flags, and cross-key rules written in
// CEL. It is pure: no I/O, no goroutines.
//
// A schema document is YAML (or JSON):
//
//	keys:
//	  session.idle_timeout:     {type: duration, default: 15m, min: 1m, max: 24h}
//	  session.absolute_timeout: {type: duration, default: 8h}
//	rules:
//	  - name: idle-within-absolute
//	    expr: session.idle_timeout <= session.absolute_timeout
//	    message: the idle timeout must not exceed the absolute timeout
//
// Parse validates the whole document and refuses it whole, naming every
// problem. Values inside the package are typed Go values:
//
//	bool → bool, int → int64, float → float64, string and enum → string,
//	duration → time.Duration, list → []string, json → map[string]any
//
// Values returned by Coerce and ParseText are freshly built; the package never
// keeps or mutates a value it is given.
package schema

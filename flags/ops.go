package flags

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// fractional is flagd's bucketing: {"fractional": [bucketKey?, [variant,
// weight], ...]}. The bucket key (default: the flag key followed by the
// targeting key) is hashed with MurmurHash3 x86_32, seed 0, and the hash
// h lands in bucket (h × total weight) >> 32. A variant or weight may be a
// rule. A missing weight is 1, a negative one 0; a weight that is not a
// whole number, or weights over 2³¹-1 in all, make the rule answer null.
func (c *compiler) fractional(raw any) node {
	list, ok := raw.([]any)
	if !ok {
		c.fail("fractional takes an array: an optional bucket key, then [variant, weight] buckets")
	}
	if len(list) == 0 {
		c.fail("fractional needs at least one [variant, weight] bucket")
	}
	var key node // nil: the flag key and the targeting key
	first := 0
	if _, isDist := list[0].([]any); !isDist {
		c.at("[0]", func() { key = c.node(list[0]) })
		first = 1
	}
	type bucket struct{ variant, weight node }
	var buckets []bucket
	static := true // every variant and weight a literal: the weights are summed once
	var staticTotal int64
	for i, d := range list[first:] {
		c.at(fmt.Sprintf("[%d]", i+first), func() {
			pair, ok := d.([]any)
			if !ok || len(pair) == 0 || len(pair) > 2 {
				c.fail("a bucket is [variant] or [variant, weight]")
			}
			var b bucket
			c.at("[0]", func() { b.variant = c.node(pair[0]) })
			b.weight = literal(float64(1))
			if len(pair) == 2 {
				c.at("[1]", func() { b.weight = c.node(pair[1]) })
			}
			if hasRule(pair[0]) || len(pair) == 2 && hasRule(pair[1]) {
				static = false
			} else if len(pair) == 2 {
				w, ok := pair[1].(float64)
				switch {
				case !ok:
					c.lint("weight %v is not a number", pair[1])
				case w != math.Trunc(w):
					c.lint("weight %v is not a whole number", w)
				case w < 0:
					c.lint("weight %v is negative (it counts as 0)", w)
				default:
					staticTotal += int64(min(w, math.MaxInt32+1))
				}
			} else {
				staticTotal++
			}
			buckets = append(buckets, b)
		})
	}
	if len(buckets) == 0 {
		c.fail("fractional needs at least one [variant, weight] bucket")
	}
	if static && staticTotal == 0 {
		c.lint("every weight is 0: no variant can be chosen")
	}
	if static && staticTotal > math.MaxInt32 {
		c.lint("the weights add up to %d, more than %d", staticTotal, math.MaxInt32)
	}
	return func(e env) any {
		var by string
		keyed := false
		if key != nil {
			switch k := key(e).(type) {
			case string:
				by, keyed = k, true
			case nil: // as flagd: a null bucket key falls back to the targeting key
			default:
				return nil
			}
		}
		if !keyed {
			root, _ := e.data.(map[string]any)
			tk, _ := root["targetingKey"].(string)
			if !e.root || tk == "" {
				return nil
			}
			by = e.flag.Key + tk
		}
		variants := make([]any, len(buckets))
		weights := make([]int64, len(buckets))
		var total int64
		for i, b := range buckets {
			variants[i] = b.variant(e)
			switch variants[i].(type) {
			case string, bool, float64, nil:
			default:
				return nil
			}
			w, ok := b.weight(e).(float64)
			if !ok || w != math.Trunc(w) || w > math.MaxInt32 {
				return nil
			}
			weights[i] = max(0, int64(w))
			total += weights[i]
		}
		if total == 0 || total > math.MaxInt32 {
			return nil
		}
		bucket := (uint64(murmur3(by)) * uint64(total)) >> 32
		var end uint64
		for i, w := range weights {
			end += uint64(w)
			if bucket < end {
				return variants[i]
			}
		}
		return nil
	}
}

// murmur3 is MurmurHash3 x86_32 with seed 0.
func murmur3(s string) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	var h uint32
	n := len(s)
	for ; len(s) >= 4; s = s[4:] {
		k := uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	var k uint32
	switch len(s) {
	case 3:
		k ^= uint32(s[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(s[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(s[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// semverOp is flagd's sem_ver: [version, operator, version], operators
// = != < <= > >= (precedence), ^ (same major) and ~ (same major and
// minor). A version may start with v or V and leave out its minor and patch
// ("1.2" is 1.2.0); build metadata is ignored. Anything else answers null.
func (c *compiler) semverOp(raw any) node {
	a := c.args(raw)
	if list, ok := raw.([]any); !ok || len(list) != 3 {
		c.lint("sem_ver takes 3 arguments: a version, an operator and a version")
	} else {
		if op, ok := list[1].(string); ok && !slices.Contains(semverOps, op) {
			c.lint("sem_ver operator %q is not one of %v", op, semverOps)
		}
		for _, i := range []int{0, 2} {
			if _, ok := parseSemver(list[i]); !ok && !hasRule(list[i]) {
				c.lint("%v is not a semantic version", list[i])
			}
		}
	}
	return func(e env) any {
		if len(a) != 3 {
			return nil
		}
		x, ok1 := parseSemver(a[0](e))
		op, _ := a[1](e).(string)
		y, ok2 := parseSemver(a[2](e))
		if !ok1 || !ok2 {
			return nil
		}
		switch op {
		case "=":
			return x.compare(y) == 0
		case "!=":
			return x.compare(y) != 0
		case "<":
			return x.compare(y) < 0
		case "<=":
			return x.compare(y) <= 0
		case ">":
			return x.compare(y) > 0
		case ">=":
			return x.compare(y) >= 0
		case "^":
			return x.major == y.major
		case "~":
			return x.major == y.major && x.minor == y.minor
		}
		return nil
	}
}

var semverOps = []string{"=", "!=", "<", "<=", ">", ">=", "^", "~"}

type semver struct {
	major, minor, patch string // decimal, no leading zeros
	pre                 []string
}

func parseSemver(v any) (semver, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case float64, bool:
		s = toString(x)
	default:
		return semver{}, false
	}
	if len(s) > 0 && (s[0] == 'v' || s[0] == 'V') {
		s = s[1:]
	}
	var out semver
	s, _, _ = strings.Cut(s, "+") // build metadata
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) > 3 || hasPre && len(parts) != 3 {
		return semver{}, false
	}
	for i, p := range parts {
		if !isNum(p) {
			return semver{}, false
		}
		*[]*string{&out.major, &out.minor, &out.patch}[i] = p
	}
	if out.minor == "" {
		out.minor = "0"
	}
	if out.patch == "" {
		out.patch = "0"
	}
	if hasPre {
		out.pre = strings.Split(pre, ".")
		for _, id := range out.pre {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" ||
				isDigits(id) && !isNum(id) {
				return semver{}, false
			}
		}
	}
	return out, true
}

func isDigits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// isNum: decimal digits without a leading zero.
func isNum(s string) bool { return isDigits(s) && (s == "0" || s[0] != '0') }

func cmpNum(x, y string) int {
	if len(x) != len(y) {
		return len(x) - len(y)
	}
	return strings.Compare(x, y)
}

func (x semver) compare(y semver) int {
	for _, c := range [][2]string{{x.major, y.major}, {x.minor, y.minor}, {x.patch, y.patch}} {
		if d := cmpNum(c[0], c[1]); d != 0 {
			return d
		}
	}
	switch {
	case len(x.pre) == 0 && len(y.pre) == 0:
		return 0
	case len(x.pre) == 0:
		return 1
	case len(y.pre) == 0:
		return -1
	}
	for i := 0; i < len(x.pre) && i < len(y.pre); i++ {
		a, b := x.pre[i], y.pre[i]
		an, bn := isDigits(a), isDigits(b)
		var d int
		switch {
		case an && bn:
			d = cmpNum(a, b)
		case an:
			d = -1
		case bn:
			d = 1
		default:
			d = strings.Compare(a, b)
		}
		if d != 0 {
			return d
		}
	}
	return len(x.pre) - len(y.pre)
}

package flags

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A JsonLogic rule is compiled once, when its flag is parsed, into a tree
// of closures: evaluating it walks no JSON and decodes nothing. Values are
// JSON's as encoding/json decodes them (nil, bool, float64, string, []any,
// map[string]any); an evaluation context's Go numbers are read as float64.
//
// Semantics are JsonLogic's (jsonlogic.com), as flagd evaluates them: its
// truthiness, JavaScript's loose equality and ordering, lazy if/and/or,
// and an operator that meets a value it cannot use answers null rather
// than failing. An unknown operator fails the compile.

// node is a compiled rule.
type node func(e env) any

// env is one evaluation: the data in scope (the context, or an item of an
// array inside map, filter, all, none, some and reduce).
type env struct {
	data any
	root bool // data is the evaluation context, which also holds $flagd
	flag *Flag
}

// maxDepth bounds a rule's nesting (and a $ref's expansion).
const maxDepth = 64

type compiler struct {
	flag       *Flag
	evaluators map[string]any // shared rules, by name ($ref)
	refs       []string       // $refs being expanded, to find loops
	path       []string       // where in the targeting we are, for errors
	// problems are rules that compile, and that flagd evaluates (to
	// null, mostly), but that cannot be what their author meant: a write
	// refuses them.
	problems []error
}

// compileError is a problem with a rule, and where it is ("targeting.if[0]").
type compileError struct {
	path string
	msg  string
}

func (e *compileError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func (c *compiler) fail(format string, args ...any) {
	panic(&compileError{path: strings.Join(c.path, ""), msg: fmt.Sprintf(format, args...)})
}

// lint records a problem that does not stop the compile.
func (c *compiler) lint(format string, args ...any) {
	c.problems = append(c.problems, &compileError{path: strings.Join(c.path, ""), msg: fmt.Sprintf(format, args...)})
}

// compile compiles rule; a problem is returned as a *compileError.
func (c *compiler) compile(rule any) (n node, err error) {
	defer func() {
		if r := recover(); r != nil {
			ce, ok := r.(*compileError)
			if !ok {
				panic(r)
			}
			err = ce
		}
	}()
	return c.node(rule), nil
}

func (c *compiler) at(step string, f func()) {
	c.path = append(c.path, step)
	if len(c.path) > maxDepth {
		c.fail("nested more than %d deep", maxDepth)
	}
	f()
	c.path = c.path[:len(c.path)-1]
}

func (c *compiler) node(rule any) node {
	switch r := rule.(type) {
	case []any:
		items := make([]node, len(r))
		for i, x := range r {
			c.at(fmt.Sprintf("[%d]", i), func() { items[i] = c.node(x) })
		}
		if !hasRule(r) {
			return literal(r) // data: made once
		}
		return func(e env) any {
			out := make([]any, len(items))
			for i, n := range items {
				out[i] = n(e)
			}
			return out
		}
	case map[string]any:
		if len(r) != 1 {
			return literal(r) // data, not a rule
		}
		for op, args := range r {
			var n node
			c.at("."+op, func() { n = c.op(op, args) })
			return n
		}
	}
	return literal(rule)
}

func literal(v any) node { return func(env) any { return v } }

// hasRule reports whether v holds a rule (an object of one key) anywhere.
func hasRule(v any) bool {
	switch x := v.(type) {
	case []any:
		return slices.ContainsFunc(x, hasRule)
	case map[string]any:
		return len(x) == 1 || slices.ContainsFunc(slices.Collect(maps.Values(x)), hasRule)
	}
	return false
}

// args compiles an operator's arguments: an array's items, or a single
// argument given bare ({"!": true} is {"!": [true]}).
func (c *compiler) args(v any) []node {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	out := make([]node, len(list))
	for i, x := range list {
		c.at(fmt.Sprintf("[%d]", i), func() { out[i] = c.node(x) })
	}
	return out
}

func (c *compiler) op(op string, raw any) node {
	switch op {
	case "$ref":
		name, ok := raw.(string)
		if !ok {
			c.fail("$ref must name an evaluator (a string)")
		}
		if c.evaluators == nil {
			return literal(nil) // checked later, against the evaluators it will run with
		}
		rule, ok := c.evaluators[name]
		if !ok {
			c.fail("$ref %q: no such evaluator in $evaluators", name)
		}
		if slices.Contains(c.refs, name) {
			c.fail("$ref %q refers to itself (%s)", name, strings.Join(append(c.refs, name), " → "))
		}
		c.refs = append(c.refs, name)
		defer func() { c.refs = c.refs[:len(c.refs)-1] }()
		return c.node(rule)
	case "var":
		return c.varOp(raw)
	case "missing", "missing_some":
		return c.missingOp(op, c.args(raw))
	case "if", "?:":
		return ifOp(c.args(raw))
	case "and", "or":
		return andOr(op == "and", c.args(raw))
	case "!", "!!":
		a := c.args(raw)
		want := op == "!!"
		return func(e env) any {
			if len(a) == 0 {
				return !want
			}
			return truthy(a[0](e)) == want
		}
	case "==", "!=", "===", "!==":
		a := c.args(raw)
		negate := op[0] == '!'
		eq := looseEqual
		if op == "===" || op == "!==" {
			eq = strictEqual
		}
		return func(e env) any {
			if len(a) < 2 {
				return negate
			}
			return eq(a[0](e), a[1](e)) != negate
		}
	case "<", "<=", ">", ">=":
		return compare(op, c.args(raw))
	case "+", "-", "*", "/", "%", "min", "max":
		return arith(op, c.args(raw))
	case "cat":
		a := c.args(raw)
		return func(e env) any {
			var b strings.Builder
			for _, n := range a {
				b.WriteString(toString(n(e)))
			}
			return b.String()
		}
	case "substr":
		return substr(c.args(raw))
	case "in":
		a := c.args(raw)
		return func(e env) any {
			if len(a) < 2 {
				return false
			}
			x, in := a[0](e), a[1](e)
			switch h := in.(type) {
			case string:
				return strings.Contains(h, toString(x))
			case []any:
				return slices.ContainsFunc(h, func(y any) bool { return strictEqual(x, y) })
			}
			return false
		}
	case "merge":
		a := c.args(raw)
		return func(e env) any {
			out := []any{}
			for _, n := range a {
				v := n(e)
				if l, ok := v.([]any); ok {
					out = append(out, l...)
				} else {
					out = append(out, v)
				}
			}
			return out
		}
	case "map", "filter", "all", "none", "some", "reduce":
		return c.arrayOp(op, raw)
	case "fractional":
		return c.fractional(raw)
	case "sem_ver":
		return c.semverOp(raw)
	case "starts_with", "ends_with":
		a := c.args(raw)
		if len(a) != 2 {
			c.lint("%s takes 2 arguments (a value and a prefix or suffix), not %d", op, len(a))
		}
		match := strings.HasPrefix
		if op == "ends_with" {
			match = strings.HasSuffix
		}
		return func(e env) any {
			if len(a) != 2 {
				return nil
			}
			s, ok1 := a[0](e).(string)
			t, ok2 := a[1](e).(string)
			if !ok1 || !ok2 {
				return nil
			}
			return match(s, t)
		}
	}
	c.fail("unknown operator %q", op)
	return nil
}

// varOp reads the data in scope: {"var": "a.b"}, {"var": ["a.b", default]},
// {"var": ""} (all of it), {"var": 1} (an index); the path may be a rule.
func (c *compiler) varOp(raw any) node {
	a := c.args(raw)
	if list, ok := raw.([]any); ok && len(list) == 0 {
		return func(e env) any { return e.data }
	}
	var def node = literal(nil)
	if len(a) > 1 {
		def = a[1]
	}
	// A constant path is split once.
	var path []string
	switch p := raw.(type) {
	case string:
		path = splitPath(p)
	case float64:
		path = splitPath(toString(p))
	case []any:
		switch p0 := p[0].(type) {
		case string:
			path = splitPath(p0)
		case float64:
			path = splitPath(toString(p0))
		}
	}
	if path != nil {
		if len(path) == 2 && path[0] == "$flagd" {
			switch path[1] {
			case "flagKey":
				key := any(c.flag.Key)
				return func(e env) any {
					if e.root {
						return key
					}
					return lookup(e.data, path, def, e)
				}
			case "timestamp":
				return func(e env) any {
					if e.root {
						return float64(now())
					}
					return lookup(e.data, path, def, e)
				}
			}
		}
		return func(e env) any { return lookup(e.data, path, def, e) }
	}
	return func(e env) any {
		p := a[0](e)
		if p == nil {
			return e.data
		}
		return lookup(e.data, splitPath(toString(p)), def, e)
	}
}

func splitPath(p string) []string {
	if p == "" {
		return []string{}
	}
	return strings.Split(p, ".")
}

// lookup follows path into data; a missing step gives def.
func lookup(data any, path []string, def node, e env) any {
	v := data
	for _, step := range path {
		switch d := v.(type) {
		case map[string]any:
			x, ok := d[step]
			if !ok {
				return def(e)
			}
			v = x
		case []any:
			i, err := strconv.Atoi(step)
			if err != nil || i < 0 || i >= len(d) {
				return def(e)
			}
			v = d[i]
		default:
			return def(e)
		}
		if v == nil {
			return def(e)
		}
	}
	return normalize(v)
}

// normalize reads a context value given in Go's types as JSON's.
func normalize(v any) any {
	switch x := v.(type) {
	case nil, bool, float64, string, []any, map[string]any:
		return v
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case uint:
		return float64(x)
	case uint64:
		return float64(x)
	case uint32:
		return float64(x)
	case float32:
		return float64(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return nil
		}
		return f
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	}
	return nil // a type JSON has no value of: as if absent
}

func (c *compiler) missingOp(op string, a []node) node {
	if op == "missing" {
		return func(e env) any { return missing(e, keysOf(e, a)) }
	}
	return func(e env) any {
		if len(a) < 2 {
			return []any{}
		}
		need := toNumber(a[0](e))
		keys, _ := a[1](e).([]any)
		m := missing(e, keys)
		if float64(len(keys)-len(m)) >= need {
			return []any{}
		}
		return m
	}
}

// keysOf is missing's arguments: keys, or one array of them (from merge).
func keysOf(e env, a []node) []any {
	var keys []any
	for i, n := range a {
		v := n(e)
		if l, ok := v.([]any); ok && i == 0 {
			return l
		}
		keys = append(keys, v)
	}
	return keys
}

func missing(e env, keys []any) []any {
	out := []any{}
	absent := literal(nil)
	for _, k := range keys {
		v := lookup(e.data, splitPath(toString(k)), absent, e)
		if v == nil || v == "" {
			out = append(out, k)
		}
	}
	return out
}

func ifOp(a []node) node {
	return func(e env) any {
		i := 0
		for ; i+1 < len(a); i += 2 {
			if truthy(a[i](e)) {
				return a[i+1](e)
			}
		}
		if i < len(a) {
			return a[i](e)
		}
		return nil
	}
}

func andOr(and bool, a []node) node {
	return func(e env) any {
		var v any
		for _, n := range a {
			v = n(e)
			if truthy(v) != and {
				return v
			}
		}
		return v
	}
}

func compare(op string, a []node) node {
	less := func(x, y any, orEqual bool) bool {
		if xs, ok := x.(string); ok {
			if ys, ok := y.(string); ok {
				return xs < ys || orEqual && xs == ys
			}
		}
		xf, yf := toNumber(x), toNumber(y)
		return xf < yf || orEqual && xf == yf
	}
	orEqual := strings.HasSuffix(op, "=")
	return func(e env) any {
		if len(a) < 2 {
			return false
		}
		x, y := a[0](e), a[1](e)
		if op[0] == '>' {
			if len(a) == 3 { // between, descending
				z := a[2](e)
				return less(z, y, orEqual) && less(y, x, orEqual)
			}
			return less(y, x, orEqual)
		}
		if len(a) == 3 { // between: {"<": [1, x, 10]}
			z := a[2](e)
			return less(x, y, orEqual) && less(y, z, orEqual)
		}
		return less(x, y, orEqual)
	}
}

func arith(op string, a []node) node {
	return func(e env) any {
		if len(a) == 0 {
			switch op {
			case "+":
				return float64(0)
			case "*":
				return float64(1)
			}
			return nil
		}
		acc := toNumber(a[0](e))
		switch op {
		case "-":
			if len(a) == 1 {
				return -acc
			}
			return acc - toNumber(a[1](e))
		case "/":
			if len(a) < 2 {
				return nil
			}
			return acc / toNumber(a[1](e))
		case "%":
			if len(a) < 2 {
				return nil
			}
			return math.Mod(acc, toNumber(a[1](e)))
		}
		for _, n := range a[1:] {
			x := toNumber(n(e))
			switch op {
			case "+":
				acc += x
			case "*":
				acc *= x
			case "min":
				acc = math.Min(acc, x)
			case "max":
				acc = math.Max(acc, x)
			}
		}
		return acc
	}
}

func substr(a []node) node {
	return func(e env) any {
		if len(a) < 2 {
			return nil
		}
		r := []rune(toString(a[0](e)))
		from := toInt(toNumber(a[1](e)))
		if from < 0 {
			from = len(r) + max(from, -len(r))
		}
		from = min(from, len(r))
		to := len(r)
		if len(a) > 2 {
			n := toInt(toNumber(a[2](e)))
			if n < 0 {
				to = max(from, len(r)+max(n, -len(r)))
			} else {
				to = from + min(n, len(r)-from)
			}
		}
		return string(r[from:to])
	}
}

// arrayOp runs a rule over each item of an array, with the item in scope.
func (c *compiler) arrayOp(op string, raw any) node {
	list, ok := raw.([]any)
	if !ok || len(list) < 2 {
		c.fail("%s takes an array and a rule", op)
	}
	var over, body, init node
	c.at("[0]", func() { over = c.node(list[0]) })
	c.at("[1]", func() { body = c.node(list[1]) })
	if op == "reduce" {
		init = literal(nil)
		if len(list) > 2 {
			c.at("[2]", func() { init = c.node(list[2]) })
		}
	}
	return func(e env) any {
		items, _ := over(e).([]any)
		run := func(item any) any { return body(env{data: item, flag: e.flag}) }
		switch op {
		case "map":
			out := make([]any, len(items))
			for i, x := range items {
				out[i] = run(x)
			}
			return out
		case "filter":
			out := []any{}
			for _, x := range items {
				if truthy(run(x)) {
					out = append(out, x)
				}
			}
			return out
		case "all":
			if len(items) == 0 {
				return false
			}
			for _, x := range items {
				if !truthy(run(x)) {
					return false
				}
			}
			return true
		case "none", "some":
			for _, x := range items {
				if truthy(run(x)) {
					return op == "some"
				}
			}
			return op == "none"
		}
		acc := init(e)
		for _, x := range items {
			acc = run(map[string]any{"current": x, "accumulator": acc})
		}
		return acc
	}
}

// truthy is JsonLogic's truth: false, 0, "", null and empty arrays are
// false ("0" and {} are true, as in JavaScript).
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0 && !math.IsNaN(x)
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	}
	return true
}

// toNumber is JavaScript's Number(v).
func toNumber(v any) float64 {
	switch x := v.(type) {
	case nil:
		return 0
	case bool:
		if x {
			return 1
		}
		return 0
	case float64:
		return x
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return 0
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !strings.Contains(err.Error(), "range") {
			return math.NaN()
		}
		return f
	case []any:
		switch len(x) {
		case 0:
			return 0
		case 1:
			return toNumber(x[0])
		}
	}
	return math.NaN()
}

// toInt is a number's whole part, within ±2³¹ (NaN: 0).
func toInt(f float64) int {
	if math.IsNaN(f) {
		return 0
	}
	return int(max(-1<<31, min(1<<31, f)))
}

// toString is how cat and in read a value: numbers as JSON writes them,
// null as nothing.
func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// looseEqual is JavaScript's ==, for JSON's values.
func looseEqual(x, y any) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	xs, xstr := x.(string)
	ys, ystr := y.(string)
	if xstr && ystr {
		return xs == ys
	}
	switch x.(type) {
	case []any, map[string]any:
		if _, ok := y.([]any); ok {
			return false // two objects: equal only if one, which JSON cannot say
		}
		if _, ok := y.(map[string]any); ok {
			return false
		}
		return looseEqual(toString(x), y)
	}
	switch y.(type) {
	case []any, map[string]any:
		return looseEqual(x, toString(y))
	}
	return toNumber(x) == toNumber(y)
}

// strictEqual is JavaScript's ===: the same type and value.
func strictEqual(x, y any) bool {
	switch a := x.(type) {
	case nil:
		return y == nil
	case bool:
		b, ok := y.(bool)
		return ok && a == b
	case float64:
		b, ok := y.(float64)
		return ok && a == b
	case string:
		b, ok := y.(string)
		return ok && a == b
	}
	return false
}

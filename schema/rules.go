package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"

	"cfgcluster/cfgerr"
)

// Rule is a cross-key rule: a CEL expression over keys by their dotted names
// that must hold after every write. A rule that reads a key with neither a
// value nor a default holds vacuously, as an SQL CHECK does on NULL.
type Rule struct {
	Name    string `json:"name"`
	Expr    string `json:"expr"`
	Message string `json:"message,omitempty"`

	// Keys are the keys the rule reads, sorted; set by Validate.
	Keys []string `json:"-"`
	prg  cel.Program
}

func newEnv(s *Schema) (*cel.Env, error) {
	opts := make([]cel.EnvOption, 0, len(s.Keys))
	for name, k := range s.Keys {
		opts = append(opts, cel.Variable(name, celType(k.Type)))
	}
	return cel.NewEnv(opts...)
}

func celType(t Type) *cel.Type {
	switch t {
	case Bool:
		return cel.BoolType
	case Int:
		return cel.IntType
	case Float:
		return cel.DoubleType
	case Duration:
		return cel.DurationType
	case List:
		return cel.ListType(cel.StringType)
	case JSON:
		return cel.MapType(cel.StringType, cel.DynType)
	}
	return cel.StringType
}

// Rule cost bounds. A rule's cost is CEL's estimate, in CEL's cost units
// (about one per value visited), for values as large as its keys allow: a
// key's max_length where set, otherwise EstimatedItems items (list, json)
// and EstimatedBytes bytes (string, and each item). A rule whose estimate is
// above MaxRuleCost is refused when the schema is validated, which refuses
// nested comprehensions over unbounded lists; the estimate assumes sizes, so
// every evaluation is bounded too: one that spends more than MaxRuleCost, or
// runs longer than RuleTimeout, fails, and the change it checks is refused.
const (
	MaxRuleCost    = 10_000_000
	RuleTimeout    = 250 * time.Millisecond
	EstimatedItems = 100
	EstimatedBytes = 256
)

// keyEstimator sizes a rule's variables from their keys' definitions, for
// CEL's cost estimate.
type keyEstimator struct{ s *Schema }

func (e keyEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func (e keyEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil
	}
	k, ok := e.s.Keys[path[0]]
	if !ok {
		return nil
	}
	size := uint64(EstimatedBytes)
	if len(path) == 1 && (k.Type == List || k.Type == JSON) {
		size = EstimatedItems
	}
	if len(path) == 1 && k.MaxLength > 0 {
		size = uint64(k.MaxLength)
	}
	return &cost.SizeEstimate{Min: 0, Max: size}
}

func (r *Rule) compile(s *Schema, env *cel.Env) error {
	if r.Expr == "" {
		return errors.New("expr is empty")
	}
	ast, iss := env.Compile(r.Expr)
	if iss.Err() != nil {
		return fmt.Errorf("does not compile: %v", iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return fmt.Errorf("must be a bool expression, is %v", ast.OutputType())
	}
	// The keys the rule reads are the checked AST's references to declared
	// keys: a comprehension's variables (all, exists, map, filter…) and
	// CEL's own @result are references too, and are not keys.
	set := map[string]bool{}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if _, declared := s.Keys[ref.Name]; declared && ref.Value == nil {
			set[ref.Name] = true
		}
	}
	if len(set) == 0 {
		return errors.New("reads no key")
	}
	r.Keys = r.Keys[:0]
	for k := range set {
		r.Keys = append(r.Keys, k)
	}
	sort.Strings(r.Keys)
	est, err := env.EstimateCost(ast, keyEstimator{s})
	if err != nil {
		return fmt.Errorf("its cost cannot be estimated: %v", err)
	}
	if est.Max > MaxRuleCost {
		return fmt.Errorf("is too expensive: its estimated cost for the largest values its keys allow is %d, above the limit %d (bound the keys it iterates with max_length, or avoid nested comprehensions)", est.Max, MaxRuleCost)
	}
	prg, err := env.Program(ast, cel.CostLimit(MaxRuleCost), cel.InterruptCheckFrequency(100))
	if err != nil {
		return err
	}
	r.prg = prg
	return nil
}

// Eval evaluates the rule over typed values; value returns a key's value
// (its stored value or its default) and whether it has one. It returns nil
// when the rule holds, and an Invalid error naming the rule and the keys it
// reads when it does not. The error's Key is the first of blame that the
// rule reads (the key being written), or else the rule's first key.
func (r *Rule) Eval(value func(key string) (any, bool), blame ...string) error {
	vars := make(map[string]any, len(r.Keys))
	for _, k := range r.Keys {
		v, ok := value(k)
		if !ok {
			return nil // vacuous: a key the rule reads is unset
		}
		vars[k] = Numbers(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), RuleTimeout)
	defer cancel()
	out, _, err := r.prg.ContextEval(ctx, vars)
	if err != nil {
		return r.violation(blame, "cannot be evaluated: %v", err)
	}
	if ok, _ := out.Value().(bool); !ok {
		msg := r.Message
		if msg == "" {
			msg = "does not hold"
		}
		return r.violation(blame, "%s (%s)", msg, r.Expr)
	}
	return nil
}

func (r *Rule) violation(blame []string, format string, args ...any) error {
	key := r.Keys[0]
	for _, b := range blame {
		if slices.Contains(r.Keys, b) {
			key = b
			break
		}
	}
	e := cfgerr.Errorf(cfgerr.Invalid, key, "rule "+r.Name, format, args...)
	if len(r.Keys) > 1 {
		e.Message += fmt.Sprintf("; the rule reads %v", r.Keys)
	}
	return e
}

// Numbers returns a JSON value (decoded with UseNumber) with its
// json.Number leaves made int64 when whole and float64 otherwise: the
// numbers CEL compares, and YAML and JSONPath print as numbers. Maps and
// slices are copied, not changed.
func Numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = Numbers(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = Numbers(e)
		}
		return l
	}
	return v
}

// CheckAll evaluates every rule over the values and returns all violations joined.
func (s *Schema) CheckAll(value func(key string) (any, bool)) error {
	return s.Check(s.Rules, value)
}

// Check evaluates the given rules and returns all violations joined, each
// naming the first key of blame that its rule reads (see Rule.Eval).
func (s *Schema) Check(rules []*Rule, value func(key string) (any, bool), blame ...string) error {
	var errs []error
	for _, r := range rules {
		errs = append(errs, r.Eval(value, blame...))
	}
	return errors.Join(errs...)
}

package flags

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"cfgcluster/internal/stripe"
)

// Flag states.
const (
	Enabled  = "ENABLED"
	Disabled = "DISABLED"
)

// Kind is the type all of a flag's variants share.
type Kind string

// The kinds of flags.
const (
	KindBool   Kind = "bool"
	KindString Kind = "string"
	KindNumber Kind = "number"
	KindObject Kind = "object"
)

// Definition is a flag as flagd's format writes it
// (https://flagd.dev/schema/v0/flags.json).
type Definition struct {
	State    string         `json:"state"`
	Variants map[string]any `json:"variants"`
	// DefaultVariant is the variant served when targeting is absent or
	// answers null; nil (absent or null): the caller's default.
	DefaultVariant *string         `json:"defaultVariant,omitempty"`
	Targeting      json.RawMessage `json:"targeting,omitempty"`
	Metadata       map[string]any  `json:"metadata,omitempty"`
}

// Flag is a parsed flag: its definition, and its targeting compiled.
type Flag struct {
	Key string
	Definition
	Kind Kind

	rule     node                  // nil: no targeting
	err      *compileError         // the targeting does not compile: evaluations fail with PARSE_ERROR
	problems []*Problem            // what a write refuses (err among them)
	metadata map[string]any        // the set's metadata under the flag's
	static   Detail                // the answer of a flag without targeting, made once
	isStatic bool                  // enabled, with no targeting: static is the answer
	dflt     Detail                // the answer when the targeting names no variant
	byName   map[string]variantRef // variant values and their counters
	usage    []*stripe.Counter     // evaluations by variant (byName's idx); the last: the caller's default
	names    []string              // the variants, by idx
	defIdx   int                   // the default variant's idx (len(names): none)
	base     map[string]uint64     // evaluations counted by the flag's earlier versions
}

// Problem is something wrong with a flag definition: the flag, where in
// its definition ("targeting.if[0].sem_ver"), and why.
type Problem struct {
	Flag   string
	Path   string
	Reason string
}

func (p *Problem) Error() string {
	where := "flag " + strconv.Quote(p.Flag)
	if p.Flag == "" {
		where = "flag file"
	}
	if p.Path != "" {
		where += ", " + p.Path
	}
	return where + ": " + p.Reason
}

// Problems lists what is wrong with the flag, each with its path: a write
// of it is refused while there are any. A flag that has problems may still
// evaluate (as flagd would evaluate it), or fail with PARSE_ERROR.
func (f *Flag) Problems() []*Problem { return f.problems }

// MaxKeyLen bounds a flag key.
const MaxKeyLen = 256

// ValidKey checks a flag key as flagd writes them: letters of either case,
// digits, '-', '_' and '.', at most MaxKeyLen bytes.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("flag key is empty")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("flag key is %d bytes, longer than %d", len(key), MaxKeyLen)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("flag key has %q: use letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// decodeStrict decodes JSON with numbers as float64, refusing trailing
// data and, into structs, unknown fields.
func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// jsonError says what is wrong with a JSON document without quoting it.
func jsonError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%s is a JSON %s, where a %s belongs", te.Field, te.Value, te.Type)
		}
		return fmt.Sprintf("a JSON %s, where a %s belongs", te.Value, te.Type)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown field " + f + " (a flag has state, variants, defaultVariant, targeting and metadata)"
	}
	if strings.HasPrefix(msg, "json: ") || strings.HasPrefix(msg, "unexpected EOF") {
		return "not valid JSON"
	}
	return msg
}

// NewFlag parses and compiles one flag definition; evaluators are the
// shared rules its targeting may name with $ref (nil: the $refs are not
// checked, and evaluate to null). The flag always comes back (unless the
// JSON itself cannot be read); check Problems before storing it.
func NewFlag(key string, def []byte, evaluators map[string]any) (*Flag, error) {
	var d Definition
	if err := decodeStrict(def, &d); err != nil {
		return nil, &Problem{Flag: key, Reason: jsonError(err)}
	}
	return compileFlag(key, d, evaluators, nil), nil
}

// compileFlag checks d and compiles its targeting.
func compileFlag(key string, d Definition, evaluators, setMeta map[string]any) *Flag {
	f := &Flag{Key: key, Definition: d, byName: map[string]variantRef{}}
	f.names = slices.Sorted(maps.Keys(d.Variants))
	for i, name := range f.names {
		f.byName[name] = variantRef{d.Variants[name], i}
	}
	f.usage = make([]*stripe.Counter, len(f.names)+1)
	for i := range f.usage {
		f.usage[i] = stripe.New(usageStripes)
	}
	f.defIdx = len(f.names)
	if d.DefaultVariant != nil {
		if ref, ok := f.byName[*d.DefaultVariant]; ok {
			f.defIdx = ref.idx
		}
	}
	bad := func(path, format string, args ...any) {
		f.problems = append(f.problems, &Problem{Flag: key, Path: path, Reason: fmt.Sprintf(format, args...)})
	}
	if err := ValidKey(key); err != nil {
		bad("", "%v", err)
	}
	switch d.State {
	case Enabled, Disabled:
	case "":
		bad("state", "missing: ENABLED or DISABLED")
	default:
		bad("state", "%q is not ENABLED or DISABLED", d.State)
	}
	if len(d.Variants) == 0 {
		bad("variants", "a flag needs at least one variant")
	}
	for _, name := range slices.Sorted(maps.Keys(d.Variants)) {
		k := kindOf(d.Variants[name])
		switch {
		case k == "":
			bad("variants."+name, "a variant is a boolean, a string, a number or an object, not %s", describe(d.Variants[name]))
		case f.Kind == "":
			f.Kind = k
		case k != f.Kind:
			bad("variants."+name, "is a %s, where the flag's other variants are %ss: all of a flag's variants have one type", k, f.Kind)
		}
	}
	if d.DefaultVariant != nil {
		if _, ok := d.Variants[*d.DefaultVariant]; !ok {
			bad("defaultVariant", "%q is not one of the variants %v", *d.DefaultVariant, slices.Sorted(maps.Keys(d.Variants)))
		}
	}
	for k, v := range d.Metadata {
		switch v.(type) {
		case bool, string, float64:
		default:
			bad("metadata."+k, "metadata values are booleans, strings or numbers, not %s", describe(v))
		}
	}
	f.metadata = map[string]any{}
	maps.Copy(f.metadata, setMeta)
	maps.Copy(f.metadata, d.Metadata)

	if t := bytes.TrimSpace(d.Targeting); len(t) > 0 && !bytes.Equal(t, []byte("{}")) && !bytes.Equal(t, []byte("null")) {
		var rule any
		if err := json.Unmarshal(t, &rule); err != nil {
			f.err = &compileError{msg: jsonError(err)}
		} else {
			c := &compiler{flag: f, evaluators: evaluators}
			n, err := c.compile(rule)
			if err != nil {
				f.err = err.(*compileError)
			} else {
				f.rule = n
			}
			for _, p := range c.problems {
				ce := p.(*compileError)
				bad("targeting"+ce.path, "%s", ce.msg)
			}
			f.checkVariantNames(rule, bad)
		}
		if f.err != nil {
			bad("targeting"+f.err.path, "%s", f.err.msg)
		}
	}
	f.dflt = f.defaultDetail(Default)
	if f.rule == nil && f.err == nil {
		f.static = f.defaultDetail(Static)
		f.isStatic = d.State != Disabled
	}
	return f
}

// checkVariantNames flags the literal strings a targeting returns that name
// no variant: an if's branches and a fractional's buckets.
func (f *Flag) checkVariantNames(rule any, bad func(path, format string, args ...any)) {
	var walk func(r any, path string, result bool)
	check := func(v any, path string) {
		if s, ok := v.(string); ok {
			if _, ok := f.Variants[s]; !ok {
				bad("targeting"+path, "answers %q, which is not one of the variants %v", s, slices.Sorted(maps.Keys(f.Variants)))
			}
		}
	}
	walk = func(r any, path string, result bool) {
		m, ok := r.(map[string]any)
		if !ok || len(m) != 1 {
			if result {
				check(r, path)
			}
			return
		}
		for op, args := range m {
			list, _ := args.([]any)
			switch op {
			case "if", "?:":
				for i, x := range list {
					isResult := i%2 == 1 || i == len(list)-1
					walk(x, fmt.Sprintf("%s.%s[%d]", path, op, i), result && isResult)
				}
			case "fractional":
				for i, x := range list {
					if pair, ok := x.([]any); ok && len(pair) > 0 && result {
						check(pair[0], fmt.Sprintf("%s.fractional[%d][0]", path, i))
					}
				}
			}
		}
	}
	walk(rule, "", true)
}

func kindOf(v any) Kind {
	switch v.(type) {
	case bool:
		return KindBool
	case string:
		return KindString
	case float64:
		return KindNumber
	case map[string]any:
		return KindObject
	}
	return ""
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case float64, int64:
		return "a number"
	}
	return fmt.Sprintf("a %T", v)
}

// Shared is what a set's flags share: the rules they name with $ref, and
// metadata every flag's evaluation carries (under its own).
type Shared struct {
	Evaluators map[string]any `json:"$evaluators,omitempty"`
	Metadata   map[string]any `json:"metadata,omitempty"`
}

// ParseShared reads and checks a set's shared part: every evaluator must
// compile (the $refs between them resolve, without loops), and metadata
// values are booleans, strings or numbers.
func ParseShared(doc []byte) (*Shared, []*Problem) {
	var sh Shared
	if err := decodeStrict(doc, &sh); err != nil {
		return nil, []*Problem{{Reason: strings.Replace(jsonError(err), "a flag has state, variants, defaultVariant, targeting and metadata", "the shared part has $evaluators and metadata", 1)}}
	}
	var out []*Problem
	for _, name := range slices.Sorted(maps.Keys(sh.Evaluators)) {
		c := &compiler{flag: &Flag{}, evaluators: sh.Evaluators, refs: []string{name}}
		if _, err := c.compile(sh.Evaluators[name]); err != nil {
			ce := err.(*compileError)
			out = append(out, &Problem{Path: "$evaluators." + name + ce.path, Reason: ce.msg})
		}
	}
	for k, v := range sh.Metadata {
		switch v.(type) {
		case bool, string, float64:
		default:
			out = append(out, &Problem{Path: "metadata." + k, Reason: "metadata values are booleans, strings or numbers, not " + describe(v)})
		}
	}
	return &sh, out
}

// NewSet makes a set of compiled flags from definitions and their shared
// part (nil: none).
func NewSet(defs map[string]Definition, shared *Shared) *Set {
	if shared == nil {
		shared = &Shared{}
	}
	s := &Set{Flags: make(map[string]*Flag, len(defs)), Evaluators: shared.Evaluators, Metadata: shared.Metadata}
	for key, d := range defs {
		s.Flags[key] = compileFlag(key, d, orEmpty(shared.Evaluators), shared.Metadata)
	}
	return s
}

// Update returns a set with defs changed (a nil definition removes its
// flag): only those flags are compiled again, with the set's shared part.
func (s *Set) Update(defs map[string]*Definition) *Set {
	out := &Set{Flags: maps.Clone(s.Flags), Evaluators: s.Evaluators, Metadata: s.Metadata}
	for key, d := range defs {
		if d == nil {
			delete(out.Flags, key)
			continue
		}
		out.Flags[key] = compileFlag(key, *d, orEmpty(s.Evaluators), s.Metadata)
	}
	return out
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Set is a flag file: flags, shared evaluators and the set's metadata.
type Set struct {
	Flags      map[string]*Flag
	Evaluators map[string]any
	Metadata   map[string]any
}

// File is flagd's flag file.
type File struct {
	Schema     string                     `json:"$schema,omitempty"`
	Flags      map[string]json.RawMessage `json:"flags"`
	Evaluators map[string]any             `json:"$evaluators,omitempty"`
	Metadata   map[string]any             `json:"metadata,omitempty"`
}

// ParseFile reads a flagd flag file. It fails only when the file cannot be
// read as one; each flag's own problems are in its Problems (Set.Problems
// lists them all), and a flag whose targeting does not compile evaluates
// with PARSE_ERROR, as flagd does.
func ParseFile(data []byte) (*Set, error) {
	var f File
	if err := decodeStrict(data, &f); err != nil {
		return nil, &Problem{Reason: jsonError(err)}
	}
	s := &Set{Flags: map[string]*Flag{}, Evaluators: f.Evaluators, Metadata: f.Metadata}
	for _, key := range slices.Sorted(maps.Keys(f.Flags)) {
		var d Definition
		if err := decodeStrict(f.Flags[key], &d); err != nil {
			s.Flags[key] = &Flag{Key: key, problems: []*Problem{{Flag: key, Reason: jsonError(err)}},
				err: &compileError{msg: jsonError(err)}}
			continue
		}
		s.Flags[key] = compileFlag(key, d, orEmpty(f.Evaluators), f.Metadata)
	}
	return s, nil
}

// Problems lists every flag's problems, by flag key.
func (s *Set) Problems() []*Problem {
	var out []*Problem
	for _, key := range slices.Sorted(maps.Keys(s.Flags)) {
		out = append(out, s.Flags[key].problems...)
	}
	return out
}

// Reason says why an evaluation answered what it did (OpenFeature's).
type Reason string

// The reasons an evaluation gives.
const (
	Static         Reason = "STATIC"          // no targeting: the default variant
	TargetingMatch Reason = "TARGETING_MATCH" // the targeting chose the variant
	Default        Reason = "DEFAULT"         // the targeting chose none: the default variant, or the caller's default
	DisabledReason Reason = "DISABLED"        // the flag is disabled: the caller's default
	ErrorReason    Reason = "ERROR"           // see ErrorCode: the caller's default
)

// ErrorCode is OpenFeature's error code of a failed evaluation.
type ErrorCode string

// The error codes an evaluation gives.
const (
	FlagNotFound   ErrorCode = "FLAG_NOT_FOUND"
	ParseError     ErrorCode = "PARSE_ERROR"
	TypeMismatch   ErrorCode = "TYPE_MISMATCH"
	InvalidContext ErrorCode = "INVALID_CONTEXT"
	General        ErrorCode = "GENERAL"
)

// Detail is an evaluation's answer. Value is nil when the caller's default
// is the answer (a disabled flag, no default variant, an error).
type Detail struct {
	Value        any
	Variant      string
	Reason       Reason
	ErrorCode    ErrorCode
	ErrorMessage string
	Metadata     map[string]any
}

func (f *Flag) defaultDetail(r Reason) Detail {
	if f.DefaultVariant == nil {
		return Detail{Reason: Default, Metadata: f.metadata}
	}
	return Detail{Value: f.Variants[*f.DefaultVariant], Variant: *f.DefaultVariant, Reason: r, Metadata: f.metadata}
}

// now is the clock of $flagd.timestamp.
var now = func() int64 { return time.Now().Unix() }

type variantRef struct {
	value any
	idx   int
}

// Evaluate evaluates the flag for a context (flagd's: targetingKey and any
// attributes; numbers may be any of Go's numeric types), and counts the
// evaluation (Usage).
func (f *Flag) Evaluate(ctx map[string]any) Detail {
	if f.isStatic {
		f.usage[f.defIdx].Inc()
		return f.static
	}
	d, idx := f.evaluate(ctx)
	f.usage[idx].Inc()
	return d
}

// evaluate answers, with the index of the variant served (len(names): the
// caller's default).
func (f *Flag) evaluate(ctx map[string]any) (Detail, int) {
	none := len(f.names)
	if f.State == Disabled {
		return Detail{Reason: DisabledReason, Metadata: f.metadata}, none
	}
	if f.err != nil {
		return Detail{Reason: ErrorReason, ErrorCode: ParseError, Metadata: f.metadata,
			ErrorMessage: fmt.Sprintf("flag %q: its targeting does not compile: %s", f.Key, f.err)}, none
	}
	if f.rule == nil {
		return f.static, f.defIdx
	}
	e := env{data: ctx, root: true, flag: f}
	if ctx == nil {
		e.data = map[string]any{}
	}
	result, err := f.run(e)
	if err != nil {
		return Detail{Reason: ErrorReason, ErrorCode: General, Metadata: f.metadata,
			ErrorMessage: fmt.Sprintf("flag %q: its targeting failed: %v", f.Key, err)}, none
	}
	var name string
	switch v := result.(type) {
	case nil:
		return f.dflt, f.defIdx
	case string:
		name = v
	case bool:
		name = strconv.FormatBool(v)
	case float64:
		name = toString(v)
	default:
		return Detail{Reason: ErrorReason, ErrorCode: General, Metadata: f.metadata,
			ErrorMessage: fmt.Sprintf("flag %q: its targeting answered %s, not a variant name", f.Key, describe(v))}, none
	}
	ref, ok := f.byName[name]
	if !ok {
		return Detail{Reason: ErrorReason, ErrorCode: General, Metadata: f.metadata,
			ErrorMessage: fmt.Sprintf("flag %q: its targeting chose a variant it does not have (a name of %d bytes; the variants are %v)",
				f.Key, len(name), f.names)}, none
	}
	return Detail{Value: ref.value, Variant: name, Reason: TargetingMatch, Metadata: f.metadata}, ref.idx
}

// run runs the targeting; a panic (a bug: every operator answers null for
// what it cannot use) fails this evaluation, not the caller.
func (f *Flag) run(e env) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return f.rule(e), nil
}

// Evaluate evaluates the flag key of the set.
func (s *Set) Evaluate(key string, ctx map[string]any) Detail {
	f, ok := s.Flags[key]
	if !ok {
		return NotFound(key)
	}
	return f.Evaluate(ctx)
}

// NotFound is the answer for a flag that does not exist.
func NotFound(key string) Detail {
	return Detail{Reason: ErrorReason, ErrorCode: FlagNotFound, ErrorMessage: fmt.Sprintf("flag %q does not exist", key)}
}

// As types an answer as the caller's default's type: its value, or def
// when the answer is the caller's default; a value of another type gives
// def with TYPE_MISMATCH. An int64 takes a number's whole part, as flagd.
func As[T bool | string | float64 | int64 | map[string]any | any](d Detail, def T) (T, Detail) {
	if d.Value == nil {
		return def, d
	}
	var v any
	switch any(def).(type) {
	case int64:
		if f, ok := d.Value.(float64); ok {
			v = int64(f)
		}
	default:
		v = d.Value
	}
	if t, ok := v.(T); ok {
		return t, d
	}
	return def, Detail{Reason: ErrorReason, ErrorCode: TypeMismatch, Variant: d.Variant, Metadata: d.Metadata,
		ErrorMessage: fmt.Sprintf("the flag's value is %s, not %s", describe(d.Value), describe(def))}
}

// Document is the set as one flagd flag file (JSON), with the flags keep
// keeps (nil: all).
func (s *Set) Document(keep func(key string) bool) ([]byte, error) {
	f := struct {
		Flags      map[string]Definition `json:"flags"`
		Evaluators map[string]any        `json:"$evaluators,omitempty"`
		Metadata   map[string]any        `json:"metadata,omitempty"`
	}{Flags: map[string]Definition{}, Evaluators: s.Evaluators, Metadata: s.Metadata}
	for key, fl := range s.Flags {
		if keep == nil || keep(key) {
			f.Flags[key] = fl.Definition
		}
	}
	return json.Marshal(f)
}

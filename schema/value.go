package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"cfgcluster/cfgerr"
)

// Type is the type of a key's value.
type Type string

const (
	Bool     Type = "bool"
	Int      Type = "int"
	Float    Type = "float"
	String   Type = "string"
	Duration Type = "duration"
	Enum     Type = "enum"
	List     Type = "list" // a list of strings
	JSON     Type = "json" // a JSON object
)

// Types lists every type, in the order the docs give them.
var Types = []Type{Bool, Int, Float, String, Duration, Enum, List, JSON}

func (t Type) valid() bool {
	for _, x := range Types {
		if t == x {
			return true
		}
	}
	return false
}

// Coerce turns a JSON- or YAML-decoded value (bool, float64, json.Number,
// string, []any, map[string]any) or an already typed value into the key's
// typed value, then checks it against the key's constraints. A duration is
// given as a string ("15m"). Strings are not parsed into other types: use
// ParseText for command-line text.
func (k *Key) Coerce(raw any) (any, error) {
	if k.Type == Flag || k.Type == FlagSet {
		return k.coerceFlag(raw)
	}
	v, err := coerce(k.Type, raw)
	if err != nil {
		return nil, k.typeError(err)
	}
	if err := k.Check(v); err != nil {
		return nil, err
	}
	return v, nil
}

// ParseText parses command-line text by the key's type ("20m", "true", "8",
// "a,b,c" or ["a","b"] for a list, a JSON object for json) and checks it.
func (k *Key) ParseText(text string) (any, error) {
	if k.Type == Flag || k.Type == FlagSet {
		v, err := parseText(JSON, text)
		if err != nil {
			return nil, k.errorf("value", "%v", err)
		}
		return k.coerceFlag(v)
	}
	v, err := parseText(k.Type, text)
	if err != nil {
		return nil, k.typeError(err)
	}
	if err := k.Check(v); err != nil {
		return nil, err
	}
	return v, nil
}

// Check checks a typed value against the key's range, enum, pattern and
// length constraints.
func (k *Key) Check(v any) error {
	switch k.Type {
	case Int, Float, Duration:
		if k.min != nil && less(v, k.min) {
			return k.errorf("value", "%s is below the minimum %s", k.shown(Format(k.Type, v)), Format(k.Type, k.min))
		}
		if k.max != nil && less(k.max, v) {
			return k.errorf("value", "%s is above the maximum %s", k.shown(Format(k.Type, v)), Format(k.Type, k.max))
		}
	case Enum:
		s := v.(string)
		for _, x := range k.Values {
			if s == x {
				return nil
			}
		}
		return k.errorf("value", "%s is not one of [%s]", k.shown(strconv.Quote(s)), strings.Join(k.Values, ", "))
	case String:
		s := v.(string)
		if k.MaxLength > 0 && len(s) > k.MaxLength {
			return k.errorf("value", "%d bytes is longer than max_length %d", len(s), k.MaxLength)
		}
		if k.re != nil && !k.re.MatchString(s) {
			return k.errorf("value", "%s does not match pattern %q", k.shown(strconv.Quote(s)), k.Pattern)
		}
	case List:
		l := v.([]string)
		if k.MaxLength > 0 && len(l) > k.MaxLength {
			return k.errorf("value", "%d items is more than max_length %d", len(l), k.MaxLength)
		}
		if k.re != nil {
			for i, s := range l {
				if !k.re.MatchString(s) {
					return k.errorf("value", "item %d %s does not match pattern %q", i, k.shown(strconv.Quote(s)), k.Pattern)
				}
			}
		}
	}
	return nil
}

// Encode returns the JSON form of a typed value: a duration becomes its
// string ("15m0s"); every other type is already JSON-ready.
func Encode(v any) any {
	if d, ok := v.(time.Duration); ok {
		return d.String()
	}
	return v
}

// Format renders a typed value as text, as ParseText would read it back.
func Format(t Type, v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Duration:
		return x.String()
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Equal reports whether two typed values are the same.
func Equal(a, b any) bool { return reflect.DeepEqual(a, b) }

// shown is how an error message shows a value of the key: as it is, or, for
// a sensitive key, never (errors reach logs, audit readers and instance
// rejections).
func (k *Key) shown(v string) string {
	if k.Sensitive {
		return "the (sensitive) value"
	}
	return v
}

// typeError wraps a coercion error; a sensitive key's, which may quote the
// value, is replaced by one that does not.
func (k *Key) typeError(err error) error {
	if k.Sensitive {
		return k.errorf("value", "the (sensitive) value is not %s", article(k.Type))
	}
	return k.errorf("value", "%v", err)
}

func (k *Key) errorf(field, format string, args ...any) error {
	return cfgerr.Errorf(cfgerr.Invalid, k.Name, field, format, args...)
}

func coerce(t Type, raw any) (any, error) {
	if raw == nil {
		return nil, fmt.Errorf("%s is required, got null", article(t))
	}
	switch t {
	case Bool:
		if b, ok := raw.(bool); ok {
			return b, nil
		}
	case Int:
		switch x := raw.(type) {
		case int64:
			return x, nil
		case int:
			return int64(x), nil
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return i, nil
			}
			return nil, fmt.Errorf("%s is not a whole number in the int64 range", x)
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
				return int64(x), nil
			}
			return nil, fmt.Errorf("%v is not a whole number in the int64 range", x)
		}
	case Float:
		switch x := raw.(type) {
		case float64:
			return finite(x)
		case int64:
			return float64(x), nil
		case int:
			return float64(x), nil
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, fmt.Errorf("%s is not a float", x)
			}
			return finite(f)
		}
	case String, Enum:
		if s, ok := raw.(string); ok {
			return s, nil
		}
	case Duration:
		switch x := raw.(type) {
		case time.Duration:
			return x, nil
		case string:
			d, err := time.ParseDuration(x)
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration (use a number and a unit, such as 15m or 1h30m)", x)
			}
			return d, nil
		}
	case List:
		switch x := raw.(type) {
		case []string:
			return append([]string{}, x...), nil
		case []any:
			out := make([]string, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("item %d is %s, not a string", i, kind(e))
				}
				out[i] = s
			}
			return out, nil
		}
	case JSON:
		if m, ok := raw.(map[string]any); ok {
			if err := checkJSON(m, 1); err != nil {
				return nil, err
			}
			return deepCopy(m).(map[string]any), nil
		}
	}
	return nil, fmt.Errorf("%s is required, got %s", article(t), kind(raw))
}

func parseText(t Type, text string) (any, error) {
	switch t {
	case Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return nil, fmt.Errorf("%q is not a bool (use true or false)", text)
		}
		return b, nil
	case Int:
		i, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number in the int64 range", text)
		}
		return i, nil
	case Float:
		f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a float", text)
		}
		return finite(f)
	case List:
		if strings.HasPrefix(strings.TrimSpace(text), "[") {
			var l []any
			if err := json.Unmarshal([]byte(text), &l); err != nil {
				return nil, fmt.Errorf("not a JSON list of strings: %v", err)
			}
			return coerce(t, l)
		}
		out := []string{}
		if strings.TrimSpace(text) != "" {
			for _, s := range strings.Split(text, ",") {
				out = append(out, strings.TrimSpace(s))
			}
		}
		return out, nil
	case JSON:
		d := json.NewDecoder(strings.NewReader(text))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
		if d.More() {
			return nil, fmt.Errorf("not a JSON object: trailing data after the object")
		}
		return coerce(t, v)
	}
	return coerce(t, text)
}

func finite(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%v is not a finite number", f)
	}
	return f, nil
}

// less orders two values of the same numeric type.
func less(a, b any) bool {
	switch x := a.(type) {
	case int64:
		return x < b.(int64)
	case float64:
		return x < b.(float64)
	case time.Duration:
		return x < b.(time.Duration)
	}
	return false
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case float64, json.Number, int, int64:
		return "a number"
	case string:
		return "a string"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// MaxJSONDepth is how deeply a json value may nest objects and lists: far
// below what a decoder refuses (encoding/json stops at 10,000), so whatever
// is stored can be read back, in audit records too.
const MaxJSONDepth = 64

// checkJSON refuses what the store could not read back: nesting deeper than
// MaxJSONDepth and numbers that are not finite float64s (1e400).
func checkJSON(v any, depth int) error {
	if depth > MaxJSONDepth {
		return fmt.Errorf("nests deeper than %d levels", MaxJSONDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if err := checkJSON(e, depth+1); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	case []any:
		for i, e := range x {
			if err := checkJSON(e, depth+1); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case json.Number:
		if f, err := x.Float64(); err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("the number %.40s is out of range (finite float64 only)", string(x))
		}
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%v is not a finite number", x)
		}
	}
	return nil
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

func article(t Type) string {
	if t == Int || t == Enum {
		return "an " + string(t)
	}
	return "a " + string(t)
}

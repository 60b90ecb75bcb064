package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"cfgcluster/cfgerr"
)

// Schema is a validated schema document. A *Schema is immutable once Parse
// returns it and safe for concurrent use.
type Schema struct {
	Keys  map[string]*Key `json:"keys"`
	Rules []*Rule         `json:"rules,omitempty"`
	// Approval "required" makes a change of the schema itself a proposal
	// that an approver must approve (the schema in force decides).
	Approval string `json:"approval,omitempty"`
	// Flags turns feature flags on: keys under FlagsNamespace.
	Flags *Flags `json:"flags,omitempty"`

	byKey map[string][]*Rule // rules that read each key
}

// Key describes one configuration key.
type Key struct {
	Name            string   `json:"-"`
	Type            Type     `json:"type"`
	Default         any      `json:"default,omitempty"`
	Min             any      `json:"min,omitempty"`
	Max             any      `json:"max,omitempty"`
	Values          []string `json:"values,omitempty"`     // enum members
	Pattern         string   `json:"pattern,omitempty"`    // RE2, anchored by the author if wanted
	MaxLength       int      `json:"max_length,omitempty"` // bytes of a string, items of a list
	Description     string   `json:"description,omitempty"`
	RequiresRestart bool     `json:"requires_restart,omitempty"`
	Sensitive       bool     `json:"sensitive,omitempty"`
	Approval        string   `json:"approval,omitempty"`  // "required" marks a critical key
	Approvals       int      `json:"approvals,omitempty"` // distinct approvals a change needs (default 1)
	Owner           string   `json:"owner,omitempty"`

	def, min, max any // typed forms of Default, Min, Max
	re            *regexp.Regexp
}

// ApprovalRequired is the value of Key.Approval that marks a critical key.
const ApprovalRequired = "required"

// MaxApprovals bounds a key's approvals.
const MaxApprovals = 10

// NeedsApproval reports whether a change of the key needs approval.
func (k *Key) NeedsApproval() bool { return k.Approval == ApprovalRequired }

// ApprovalsNeeded is how many distinct approvals a change of the key needs
// (0 when it needs none).
func (k *Key) ApprovalsNeeded() int {
	if !k.NeedsApproval() {
		return 0
	}
	return max(k.Approvals, 1)
}

// Parse reads a YAML or JSON schema document and validates it. Unknown fields
// are refused. On error nothing of the document is usable: the error joins
// every problem found (see cfgerr.All).
func Parse(doc []byte) (*Schema, error) {
	js, err := YAMLToJSON(doc)
	if err != nil {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "schema", "%v", err)
	}
	s := &Schema{}
	if !bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		d := json.NewDecoder(bytes.NewReader(js))
		d.UseNumber()
		d.DisallowUnknownFields()
		if err := d.Decode(s); err != nil {
			return nil, cfgerr.Errorf(cfgerr.Invalid, "", "schema", "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks the whole schema and prepares it for use. It returns every
// problem joined (errors.Join of *cfgerr.Error), each naming its key or rule.
func (s *Schema) Validate() error {
	if s.Keys == nil {
		s.Keys = map[string]*Key{}
	}
	var errs []error
	if s.Approval != "" && s.Approval != ApprovalRequired {
		errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", "approval", "unknown schema approval %q (only %q)", s.Approval, ApprovalRequired))
	}
	if s.Flags != nil {
		errs = append(errs, s.Flags.validate()...)
	}
	for _, name := range s.KeyNames() {
		k := s.Keys[name]
		if _, flag := FlagKeyOf(name); flag || name == FlagsNamespace {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, name, "", "%s and %s.* are feature flags: turn them on with the schema's flags section, not keys", FlagsNamespace, FlagsNamespace))
			continue
		}
		if k == nil {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, name, "", "key has no definition"))
			continue
		}
		k.Name = name
		errs = append(errs, k.Validate())
	}
	// Keys whose environment overrides would be one variable
	// (x.b_c, x.b-c and x_b.c are all CFG_X_B_C) cannot be told apart.
	byEnv := map[string][]string{}
	for _, name := range s.KeyNames() {
		env := EnvVar("", name)
		byEnv[env] = append(byEnv[env], name)
	}
	for _, name := range s.KeyNames() {
		if same := byEnv[EnvVar("", name)]; len(same) > 1 && same[0] == name {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, name, "name", "keys %s share the environment override <prefix>%s: rename all but one", strings.Join(same, ", "), EnvVar("", name)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // rules are typed by the keys: compile them only over valid keys
	}
	env, err := newEnv(s)
	if err != nil {
		return cfgerr.Errorf(cfgerr.Invalid, "", "rules", "%v", err)
	}
	s.byKey = map[string][]*Rule{}
	seen := map[string]bool{}
	for i, r := range s.Rules {
		if r == nil {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", fmt.Sprintf("rules[%d]", i), "rule is empty"))
			continue
		}
		if r.Name == "" {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", fmt.Sprintf("rules[%d].name", i), "a rule needs a name"))
		} else if seen[r.Name] {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", fmt.Sprintf("rules[%d].name", i), "rule %q is defined twice", r.Name))
		}
		seen[r.Name] = true
		if err := r.compile(s, env); err != nil {
			errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", fmt.Sprintf("rules[%d]", i), "rule %q: %v", r.Name, err))
			continue
		}
		for _, k := range r.Keys {
			s.byKey[k] = append(s.byKey[k], r)
		}
	}
	return errors.Join(errs...)
}

// Validate checks one key's definition and prepares its typed default and bounds.
func (k *Key) Validate() error {
	if err := ValidKeyName(k.Name); err != nil {
		return err
	}
	if !k.Type.valid() {
		if k.Type == "" {
			return k.errorf("type", "type is missing (one of %s)", typeList())
		}
		return k.errorf("type", "unknown type %q (one of %s)", k.Type, typeList())
	}
	var errs []error
	bound := func(field string, raw any) any {
		if raw == nil {
			return nil
		}
		if k.Type != Int && k.Type != Float && k.Type != Duration {
			errs = append(errs, k.errorf(field, "%s applies only to int, float and duration keys", field))
			return nil
		}
		v, err := coerce(k.Type, raw)
		if err != nil {
			errs = append(errs, k.errorf(field, "%v", err))
		}
		return v
	}
	k.min, k.max = bound("min", k.Min), bound("max", k.Max)
	if k.min != nil && k.max != nil && less(k.max, k.min) {
		errs = append(errs, k.errorf("max", "max %s is below min %s", Format(k.Type, k.max), Format(k.Type, k.min)))
	}
	if k.Type == Enum && len(k.Values) == 0 {
		errs = append(errs, k.errorf("values", "an enum needs at least one value"))
	}
	if k.Type != Enum && len(k.Values) > 0 {
		errs = append(errs, k.errorf("values", "values apply only to enum keys"))
	}
	if k.Pattern != "" {
		if k.Type != String && k.Type != List {
			errs = append(errs, k.errorf("pattern", "pattern applies only to string and list keys"))
		} else if re, err := regexp.Compile(k.Pattern); err != nil {
			errs = append(errs, k.errorf("pattern", "does not compile: %v", err))
		} else {
			k.re = re
		}
	}
	if k.MaxLength < 0 || (k.MaxLength > 0 && k.Type != String && k.Type != List) {
		errs = append(errs, k.errorf("max_length", "max_length must be positive and applies only to string and list keys"))
	}
	if k.Approval != "" && k.Approval != ApprovalRequired {
		errs = append(errs, k.errorf("approval", "unknown approval %q (only %q)", k.Approval, ApprovalRequired))
	}
	if k.Approvals != 0 && (k.Approvals < 1 || k.Approvals > MaxApprovals) {
		errs = append(errs, k.errorf("approvals", "%d approvals: give 1 to %d", k.Approvals, MaxApprovals))
	} else if k.Approvals != 0 && !k.NeedsApproval() {
		errs = append(errs, k.errorf("approvals", "is set but the key does not need approval (add approval: required)"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if k.Default != nil {
		v, err := coerce(k.Type, k.Default)
		if err == nil {
			err = k.Check(v)
		}
		if err != nil {
			return k.errorf("default", "default does not fit the key: %v", strings.TrimPrefix(err.Error(), fmt.Sprintf("key %q: value: ", k.Name)))
		}
		k.def = v
	}
	return nil
}

// Lookup returns the key's definition: a key of the schema's, or a feature
// flag's (FlagsNamespace) when the schema has a flags section.
func (s *Schema) Lookup(name string) (*Key, bool) {
	if k, ok := s.Keys[name]; ok {
		return k, true
	}
	if k := s.flagKey(name); k != nil && ValidKeyName(name) == nil {
		return k, true
	}
	return nil, false
}

// Key returns the key's definition, or a NotFound error naming it.
func (s *Schema) Key(name string) (*Key, error) {
	if err := ValidKeyName(name); err != nil {
		return nil, err
	}
	if k, ok := s.Lookup(name); ok {
		return k, nil
	}
	if _, flag := FlagKeyOf(name); flag || name == FlagsNamespace {
		return nil, cfgerr.Errorf(cfgerr.NotFound, name, "", "feature flags are not on: the schema has no flags section")
	}
	return nil, cfgerr.Errorf(cfgerr.NotFound, name, "", "key is not in the schema")
}

// KeyNames returns the schema's key names, sorted.
func (s *Schema) KeyNames() []string {
	names := make([]string, 0, len(s.Keys))
	for n := range s.Keys {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DefaultValue returns the key's typed default, and whether it has one.
func (k *Key) DefaultValue() (any, bool) { return k.def, k.def != nil }

// RulesFor returns the rules that read any of the keys, each once, in schema order.
func (s *Schema) RulesFor(keys ...string) []*Rule {
	hit := map[*Rule]bool{}
	for _, k := range keys {
		for _, r := range s.byKey[k] {
			hit[r] = true
		}
	}
	var out []*Rule
	for _, r := range s.Rules {
		if hit[r] {
			out = append(out, r)
		}
	}
	return out
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// MaxDocumentBytes bounds a schema document.
const MaxDocumentBytes = 8 << 20

// maxYAMLNodes bounds the values a document may expand to through aliases.
const maxYAMLNodes = 1 << 20

// YAMLToJSON converts a YAML (1.2: "yes" and "y" stay strings) or JSON
// document to JSON. An empty document becomes null. It takes time linear
// in the document: yaml.v3 decodes a mapping into a Go map in time
// quadratic in its keys (80,000 keys: 40 s), so the document is parsed
// into yaml.v3's node tree and converted here, with duplicate keys refused.
func YAMLToJSON(doc []byte) ([]byte, error) {
	if len(doc) > MaxDocumentBytes {
		return nil, fmt.Errorf("the document is %d bytes, over the %d-byte limit", len(doc), MaxDocumentBytes)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("malformed YAML or JSON: %v", err)
	}
	budget := maxYAMLNodes
	v, err := fromNode(&root, &budget)
	if err != nil {
		return nil, fmt.Errorf("malformed YAML or JSON: %v", err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("malformed YAML or JSON: %v", err)
	}
	return js, nil
}

// fromNode converts a YAML node to the value yaml.v3 would decode it to
// (map[string]any, []any, scalars), spending one of budget per node, so
// aliases cannot expand a small document into a huge one.
func fromNode(n *yaml.Node, budget *int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("the document expands to more than %d values", maxYAMLNodes)
	}
	switch n.Kind {
	case 0:
		return nil, nil // an empty document
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return fromNode(n.Content[0], budget)
	case yaml.AliasNode:
		return fromNode(n.Alias, budget)
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, err := fromNode(c, budget)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key must be a scalar", kn.Line)
			}
			if kn.ShortTag() == "!!merge" {
				return nil, fmt.Errorf("line %d: merge keys (<<) are not supported", kn.Line)
			}
			if _, dup := out[kn.Value]; dup {
				return nil, fmt.Errorf("line %d: mapping key %q already defined", kn.Line, kn.Value)
			}
			v, err := fromNode(vn, budget)
			if err != nil {
				return nil, err
			}
			out[kn.Value] = v
		}
		return out, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %v", n.Line, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

package schema

import (
	"encoding/json"
	"errors"
	"strings"

	"cfgcluster/cfgerr"
	"cfgcluster/flags"
)

// FlagsNamespace holds the feature flags: the key "flags.KEY" is the flag
// KEY, in flagd's format (flags.Definition), and the key "flags" is what the
// flags share ($evaluators and metadata: flags.Shared). Flag keys are
// flagd's (mixed case, '-', '_', '.'), so a flagd flag file imports
// unchanged. The schema turns flags on once, with its `flags:` section;
// creating a flag needs no schema change.
const FlagsNamespace = "flags"

// The types of the flags namespace's keys. They are never declared under
// keys: the schema's flags section gives them.
const (
	Flag    Type = "flag"    // a flag's definition
	FlagSet Type = "flagset" // what the flags share
)

// Flags is the schema's flags section: with it, any flag may be created
// under FlagsNamespace, and every flag takes its owner and approval from it.
type Flags struct {
	Description string `json:"description,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Approval    string `json:"approval,omitempty"`
	Approvals   int    `json:"approvals,omitempty"`
}

// FlagKeyOf returns the flag key of a key in the flags namespace.
func FlagKeyOf(name string) (string, bool) {
	return strings.CutPrefix(name, FlagsNamespace+".")
}

// flagKey is the definition of a key in the flags namespace: made from the
// schema's flags section, nil when the schema has none.
func (s *Schema) flagKey(name string) *Key {
	if s.Flags == nil {
		return nil
	}
	t := Flag
	if name == FlagsNamespace {
		t = FlagSet
	} else if _, ok := FlagKeyOf(name); !ok {
		return nil
	}
	return &Key{Name: name, Type: t, Description: s.Flags.Description, Owner: s.Flags.Owner,
		Approval: s.Flags.Approval, Approvals: s.Flags.Approvals}
}

func (f *Flags) validate() []error {
	var errs []error
	if f.Approval != "" && f.Approval != ApprovalRequired {
		errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", "flags.approval", "unknown approval %q (only %q)", f.Approval, ApprovalRequired))
	}
	if f.Approvals < 0 || f.Approvals > MaxApprovals {
		errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, "", "flags.approvals", "approvals is %d: from 1 to %d", f.Approvals, MaxApprovals))
	}
	return errs
}

// coerceFlag checks a flag definition or the flags' shared part, and
// returns it as JSON decodes it (numbers as float64, as flagd reads them).
// A flag's $refs are checked with the shared part, by the store, which
// reads both.
func (k *Key) coerceFlag(raw any) (any, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, k.errorf("value", "a %s is a JSON object, got %s", k.Type, kind(raw))
	}
	if err := checkJSON(m, 1); err != nil {
		return nil, k.errorf("value", "%v", err)
	}
	doc, err := json.Marshal(m)
	if err != nil {
		return nil, k.errorf("value", "%v", err)
	}
	var problems []*flags.Problem
	if k.Type == FlagSet {
		_, problems = flags.ParseShared(doc)
	} else {
		key, _ := FlagKeyOf(k.Name)
		f, err := flags.NewFlag(key, doc, nil)
		if err != nil {
			problems = []*flags.Problem{err.(*flags.Problem)}
		} else {
			problems = f.Problems()
		}
	}
	if err := FlagProblems(k.Name, problems); err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, k.errorf("value", "%v", err)
	}
	return v, nil
}

// FlagProblems turns a flag's problems into the errors of its key, each
// naming the field of the definition ("targeting.if[0]").
func FlagProblems(key string, problems []*flags.Problem) error {
	var errs []error
	for _, p := range problems {
		errs = append(errs, cfgerr.Errorf(cfgerr.Invalid, key, p.Path, "%s", p.Reason))
	}
	return errors.Join(errs...)
}

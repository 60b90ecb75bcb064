package schema

import (
	"strings"

	"cfgcluster/cfgerr"
	"cfgcluster/flags"
)

// MaxKeyLen is the longest key name, in bytes.
const MaxKeyLen = 256

// ValidKeyName reports whether name is a key name: lowercase dotted segments
// of [a-z0-9_-], at most MaxKeyLen bytes ("session.idle_timeout"); or, in
// FlagsNamespace, a flagd flag key ("flags.new-Checkout_v2").
func ValidKeyName(name string) error {
	bad := func(format string, args ...any) error {
		return cfgerr.Errorf(cfgerr.Invalid, name, "name", format, args...)
	}
	if name == "" {
		return cfgerr.Errorf(cfgerr.Invalid, "", "name", "key name is empty")
	}
	if len(name) > MaxKeyLen {
		return bad("key name is %d bytes, longer than %d", len(name), MaxKeyLen)
	}
	if key, ok := FlagKeyOf(name); ok {
		if err := flags.ValidKey(key); err != nil {
			return bad("%v", err)
		}
		return nil
	}
	for i, seg := range strings.Split(name, ".") {
		if seg == "" {
			return bad("segment %d is empty (key names are dotted paths such as session.idle_timeout)", i+1)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return bad("character %q is not allowed (use lowercase letters, digits, '_' and '-' between dots)", r)
			}
		}
	}
	return nil
}

// EnvVar is the environment variable that overrides key: the prefix followed
// by the key in upper case with '.' and '-' turned into '_'
// (EnvVar("CFG_", "session.idle_timeout") == "CFG_SESSION_IDLE_TIMEOUT").
func EnvVar(prefix, key string) string {
	return prefix + strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '-':
			return '_'
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, key)
}

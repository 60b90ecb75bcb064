// Package auth is who may do what: bearer tokens (random, stored in etcd
// only as a hash) that name a subject and roles, and roles that grant verbs
// on key prefixes. Nodes keep every token and role in memory, kept current
// by a watch of the auth range, so checking a request costs no round trip
// and a revocation reaches every node within the watch's latency.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"time"

	"cfgcluster/cfgerr"
)

// Verb is what a request does.
type Verb string

// The verbs. Read shows values (sensitive ones redacted); ReadSensitive
// shows sensitive values too; Write changes values; Approve approves
// changes to critical keys; Operate opens maintenance windows and reads
// instances and rollouts; Admin changes the schema, tokens, roles and
// members, and takes snapshots.
const (
	Read          Verb = "read"
	ReadSensitive Verb = "read-sensitive"
	Write         Verb = "write"
	Approve       Verb = "approve"
	Operate       Verb = "operate"
	Admin         Verb = "admin"
)

// Verbs are every verb, in order.
var Verbs = []Verb{Read, ReadSensitive, Write, Approve, Operate, Admin}

// ParseVerb checks a verb's name.
func ParseVerb(s string) (Verb, error) {
	if slices.Contains(Verbs, Verb(s)) {
		return Verb(s), nil
	}
	names := make([]string, len(Verbs))
	for i, v := range Verbs {
		names[i] = string(v)
	}
	return "", cfgerr.Errorf(cfgerr.Invalid, "", "verbs", "%q is not a verb: give %s", s, strings.Join(names, ", "))
}

// Grant gives verbs on every key under Prefix ("" is every key).
type Grant struct {
	Verbs  []Verb `json:"verbs"`
	Prefix string `json:"prefix,omitempty"`
}

// Role is a named set of grants.
type Role struct {
	Name    string  `json:"name"`
	Grants  []Grant `json:"grants"`
	BuiltIn bool    `json:"built_in,omitempty"`
}

// BuiltIn are the roles every cluster has; they cannot be changed.
var BuiltIn = map[string]Role{
	"viewer":   {Name: "viewer", Grants: []Grant{{Verbs: []Verb{Read}}}, BuiltIn: true},
	"editor":   {Name: "editor", Grants: []Grant{{Verbs: []Verb{Read, Write}}}, BuiltIn: true},
	"approver": {Name: "approver", Grants: []Grant{{Verbs: []Verb{Read, Approve}}}, BuiltIn: true},
	"operator": {Name: "operator", Grants: []Grant{{Verbs: []Verb{Read, Operate}}}, BuiltIn: true},
	"admin":    {Name: "admin", Grants: []Grant{{Verbs: Verbs}}, BuiltIn: true},
}

// Token is a stored credential: never the secret, only its hash.
type Token struct {
	Name     string    `json:"name"`
	Subject  string    `json:"subject"`            // who uses it: the audit trail's actor
	Roles    []string  `json:"roles"`              // what it may do
	Prefixes []string  `json:"prefixes,omitempty"` // and only on keys under these, when given
	Hash     string    `json:"hash"`               // hex SHA-256 of the secret
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"` // zero: never
	Creator  string    `json:"creator,omitempty"`
}

// Principal is an authenticated caller and what it may do.
type Principal struct {
	Name, Subject string
	grants        []Grant
	prefixes      []string
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidName checks a token or role name: 1 to 63 of [a-z0-9._-].
func ValidName(field, name string) error {
	if !namePattern.MatchString(name) {
		return cfgerr.Errorf(cfgerr.Invalid, "", field, "%q is not a name: 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// tokenPrefix starts every token: it says what the string is (a secret
// scanner can find leaked ones) and which version of the format.
const tokenPrefix = "cfgt1_"

// NewSecret makes a token for name: tokenPrefix, the name, and 256 random
// bits. It returns the token, shown once, and the hash that is stored.
func NewSecret(name string) (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	return tokenPrefix + name + "_" + secret, hashOf(secret), nil
}

func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// secretChars is the length of a token's secret: 32 bytes in base64url.
const secretChars = 43

// MaxTokenBytes bounds a credential header's value.
const MaxTokenBytes = 256

// parse splits a token into its name and secret.
func parse(token string) (name, secret string, err error) {
	if len(token) > MaxTokenBytes {
		return "", "", unauthenticated("the token is over %d bytes", MaxTokenBytes)
	}
	// The secret is the last 43 characters (256 bits in unpadded base64url,
	// whose alphabet has '_' too), after a '_'.
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	i := len(rest) - secretChars - 1
	if !ok || i <= 0 || rest[i] != '_' || ValidName("name", rest[:i]) != nil {
		return "", "", unauthenticated("malformed token: a cfgcluster token is %sNAME_SECRET", tokenPrefix)
	}
	return rest[:i], rest[i+1:], nil
}

func unauthenticated(format string, args ...any) error {
	return cfgerr.Errorf(cfgerr.Unauthenticated, "", "token", format, args...)
}

// Check verifies a presented token against the stored one, in constant
// time, and that it has not expired.
func (t *Token) check(secret string, now time.Time) error {
	want, err := hex.DecodeString(t.Hash)
	got := sha256.Sum256([]byte(secret))
	if err != nil || subtle.ConstantTimeCompare(want, got[:]) != 1 {
		return unauthenticated("unknown or revoked token")
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return unauthenticated("token %q expired at %s", t.Name, t.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// principal is what the token may do, its roles resolved by roles.
func (t *Token) principal(roles func(string) (Role, bool)) *Principal {
	p := &Principal{Name: t.Name, Subject: t.Subject, prefixes: t.Prefixes}
	for _, name := range t.Roles {
		if r, ok := roles(name); ok {
			p.grants = append(p.grants, r.Grants...)
		}
	}
	return p
}

// Can reports whether the principal may do verb on key. Admin implies every
// verb; ReadSensitive implies Read.
func (p *Principal) Can(verb Verb, key string) bool {
	if len(p.prefixes) > 0 && !slices.ContainsFunc(p.prefixes, func(pre string) bool { return strings.HasPrefix(key, pre) }) {
		return false
	}
	for _, g := range p.grants {
		if !strings.HasPrefix(key, g.Prefix) {
			continue
		}
		if slices.ContainsFunc(g.Verbs, func(v Verb) bool { return implies(v, verb) }) {
			return true
		}
	}
	return false
}

// implies reports whether granting v grants verb: admin grants every verb,
// read-sensitive grants read.
func implies(v, verb Verb) bool {
	return v == verb || v == Admin || (v == ReadSensitive && verb == Read)
}

// CanSome reports whether the principal may do verb on some key: a route
// that is not about one key (a list, the audit trail) lets it in, and
// filters what it shows by Can.
func (p *Principal) CanSome(verb Verb) bool {
	for _, g := range p.grants {
		if slices.ContainsFunc(g.Verbs, func(v Verb) bool { return implies(v, verb) }) {
			return true
		}
	}
	return false
}

// Forbidden is the refusal of verb on what (a key, a prefix, or a route).
func Forbidden(p *Principal, verb Verb, what string) error {
	return cfgerr.Errorf(cfgerr.Forbidden, "", "authorization", "%s may not %s %s", p.Name, verb, what)
}

// Describe lists a principal's grants, for whoami.
func (p *Principal) Describe() []Grant {
	out := slices.Clone(p.grants)
	if len(p.prefixes) == 0 {
		return out
	}
	var limited []Grant
	for _, g := range out {
		for _, pre := range p.prefixes {
			switch {
			case strings.HasPrefix(pre, g.Prefix):
				limited = append(limited, Grant{Verbs: g.Verbs, Prefix: pre})
			case strings.HasPrefix(g.Prefix, pre):
				limited = append(limited, g)
			}
		}
	}
	return limited
}

func (r Role) validate() error {
	if err := ValidName("name", r.Name); err != nil {
		return err
	}
	if _, builtIn := BuiltIn[r.Name]; builtIn {
		return cfgerr.Errorf(cfgerr.Invalid, "", "name", "%q is a built-in role", r.Name)
	}
	if len(r.Grants) == 0 {
		return cfgerr.Errorf(cfgerr.Invalid, "", "grants", "role %q grants nothing", r.Name)
	}
	for _, g := range r.Grants {
		if len(g.Verbs) == 0 {
			return cfgerr.Errorf(cfgerr.Invalid, "", "verbs", "role %q: a grant without verbs", r.Name)
		}
		for _, v := range g.Verbs {
			if _, err := ParseVerb(string(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

package auth

import (
	"strings"
	"testing"
	"time"

	"cfgcluster/cfgerr"
)

func TestTokens(t *testing.T) {
	for range 200 { // secrets hold '_' and '-' often: every one parses
		tok, hash, err := NewSecret("billing-ci")
		if err != nil {
			t.Fatal(err)
		}
		name, secret, err := parse(tok)
		if err != nil || name != "billing-ci" || hashOf(secret) != hash || len(secret) != 43 {
			t.Fatalf("%s: %q %v", tok, name, err)
		}
		stored := &Token{Name: name, Hash: hash}
		if err := stored.check(secret, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := stored.check(secret[:42]+"A", time.Now()); cfgerr.CodeOf(err) != cfgerr.Unauthenticated && secret[42] != 'A' {
			t.Fatalf("a wrong secret: %v", err)
		}
	}
	for _, bad := range []string{"", "cfgt1_", "Bearer x", "cfgt1_x_short", "cfgt1__" + strings.Repeat("a", 43),
		"cfgt1_Name_" + strings.Repeat("a", 43), strings.Repeat("x", 300), "cfgt2_a_" + strings.Repeat("a", 43)} {
		if _, _, err := parse(bad); cfgerr.CodeOf(err) != cfgerr.Unauthenticated {
			t.Errorf("%q parsed: %v", bad, err)
		}
	}
	exp := &Token{Name: "old", Hash: hashOf("s"), Expires: time.Now().Add(-time.Second)}
	if err := exp.check("s", time.Now()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: %v", err)
	}
}

func TestPrincipal(t *testing.T) {
	roles := func(name string) (Role, bool) {
		if name == "billing-editor" {
			return Role{Name: name, Grants: []Grant{{Verbs: []Verb{Read, Write}, Prefix: "billing."}}}, true
		}
		r, ok := BuiltIn[name]
		return r, ok
	}
	ed := (&Token{Name: "e", Roles: []string{"billing-editor", "viewer"}}).principal(roles)
	for _, c := range []struct {
		verb Verb
		key  string
		want bool
	}{
		{Write, "billing.limits", true}, {Write, "log.level", false}, {Read, "log.level", true},
		{Admin, "", false}, {ReadSensitive, "billing.limits", false}, {Operate, "billing.limits", false},
	} {
		if got := ed.Can(c.verb, c.key); got != c.want {
			t.Errorf("billing editor: %s %s = %v", c.verb, c.key, got)
		}
	}
	// A token's prefixes narrow every role it names, admin's too.
	narrow := (&Token{Name: "n", Roles: []string{"admin"}, Prefixes: []string{"site."}}).principal(roles)
	if !narrow.Can(Write, "site.banner") || narrow.Can(Read, "log.level") || narrow.Can(Admin, "") {
		t.Fatal("a token's prefixes")
	}
	admin := (&Token{Name: "a", Roles: []string{"admin"}}).principal(roles)
	for _, v := range Verbs {
		if !admin.Can(v, "") || !admin.Can(v, "any.key") {
			t.Errorf("admin may not %s", v)
		}
	}
	if (&Token{Name: "x", Roles: []string{"gone"}}).principal(roles).CanSome(Read) {
		t.Fatal("a role that does not exist grants something")
	}
	if _, err := ParseVerb("delete"); cfgerr.CodeOf(err) != cfgerr.Invalid || !strings.Contains(err.Error(), "read-sensitive") {
		t.Fatalf("unknown verb: %v", err)
	}
	if err := (Role{Name: "r", Grants: []Grant{{Verbs: []Verb{"fly"}}}}).validate(); err == nil {
		t.Fatal("a role with an unknown verb")
	}
	if err := (Role{Name: "admin", Grants: []Grant{{Verbs: []Verb{Read}}}}).validate(); err == nil {
		t.Fatal("a role named like a built-in one")
	}
}

func FuzzParse(f *testing.F) {
	tok, _, _ := NewSecret("seed")
	f.Add(tok)
	f.Add("cfgt1_a_b")
	f.Fuzz(func(t *testing.T, s string) {
		name, secret, err := parse(s)
		if err == nil && (ValidName("name", name) != nil || len(secret) != 43 || tokenPrefix+name+"_"+secret != s) {
			t.Fatalf("%q parsed as %q, %q", s, name, secret)
		}
	})
}

package auth

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAuthorize is what a request's authentication and authorization
// cost on a node: the token's lookup, its hash compared in constant time,
// its roles resolved, and one check of a verb on a key.
func BenchmarkAuthorize(b *testing.B) {
	tok, hash, _ := NewSecret("ci")
	s := &Store{tokens: map[string]*Token{"ci": {Name: "ci", Subject: "ci", Roles: []string{"editor"}, Hash: hash}},
		roles: map[string]Role{}, now: time.Now}
	b.ReportAllocs()
	for b.Loop() {
		p, err := s.Authenticate(context.Background(), tok)
		if err != nil || !p.Can(Write, "billing.limits") {
			b.Fatal(err)
		}
	}
}

package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session/memory"
)

// TestDPoPMisbehavingOP: with oidc.dpop, a provider that ignores DPoP
// (its answer is a plain Bearer token) fails the login; one that says
// token_type DPoP but puts no cnf.jkt in the token gets a session whose
// token the DPoP resource server refuses. Neither becomes a Bearer
// session that works.
func TestDPoPMisbehavingOP(t *testing.T) {
	t.Run("a provider that knows no DPoP", func(t *testing.T) {
		e, rs := newDPoPEnv(t, memory.New(memory.Options{}), func(b *oidctest.Behavior) { b.DPoP = false })
		b := e.browser()
		r := b.login("/")
		if b.sessionCookie() != nil || r.StatusCode < 400 {
			t.Fatalf("login with an unbound token: %s, cookie %v", r.Status, b.sessionCookie())
		}
		if strings.Contains(string(r.body), "at-") || !strings.Contains(e.logs.String(), "not DPoP") {
			t.Fatalf("the error shows a token, or the log does not say why: %s", r.body)
		}
		if seen := rs.take(); len(seen) != 0 {
			t.Fatalf("the upstream was called: %+v", seen)
		}
	})
	t.Run("token_type DPoP without cnf.jkt", func(t *testing.T) {
		e, rs := newDPoPEnv(t, memory.New(memory.Options{}), func(b *oidctest.Behavior) { b.DPoPDropCnf = true })
		b := e.browser()
		if r := b.login("/"); b.sessionCookie() == nil {
			t.Fatalf("login: %s %s", r.Status, r.body)
		}
		r := b.api("GET", "/dpop/x")
		seen := rs.take()
		if r.StatusCode == http.StatusOK || len(seen) == 0 {
			t.Fatalf("API call with an unbound token: %s, upstream saw %+v", r.Status, seen)
		}
		for _, s := range seen {
			if s.status != http.StatusUnauthorized {
				t.Fatalf("the upstream answered %d to a token without cnf.jkt", s.status)
			}
		}
	})
}

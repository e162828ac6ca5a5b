package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/realop"
)

// TestRealOPClientCredentials: against the real oidc-provider, a token:
// client route sends a client-credentials token the provider confirms as
// active and subject-less (RFC 6749 §4.4), user_or_client sends the
// user's token once logged in, and optional_user sends nothing without a
// session.
func TestRealOPClientCredentials(t *testing.T) {
	e := newRealEnv(t, realop.Options{}, func(c *config.Config) {
		up := c.Routes[0].Upstream
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/svc/", Upstream: up, Token: config.TokenClient},
			config.Route{Prefix: "/resource/mixed/", Upstream: up, Token: config.TokenUserOrClient},
			config.Route{Prefix: "/resource/opt/", Upstream: up, Token: config.TokenOptionalUser},
		)
	})
	ua := e.op.UserAgent("alice")
	last := func() (string, string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.bearer[len(e.bearer)-1], e.subs[len(e.subs)-1]
	}
	for _, path := range []string{"/resource/svc/x", "/resource/mixed/x"} {
		r := e.api(t, ua, http.MethodGet, path)
		if r.Status != http.StatusOK {
			t.Fatalf("%s without a session: %d %s", path, r.Status, r.Body)
		}
		if bearer, sub := last(); !strings.HasPrefix(bearer, "Bearer ") || sub != "" {
			t.Fatalf("%s: the upstream saw %q for subject %q, want an active client token without a subject", path, bearer, sub)
		}
	}
	// The upstream answers 401 to a request without an active token: an
	// optional_user call without a session reaches it with none.
	if r := e.api(t, ua, http.MethodGet, "/resource/opt/x"); r.Status != http.StatusUnauthorized {
		t.Fatalf("optional_user without a session: %d %s, want the upstream's own 401 (no token sent)", r.Status, r.Body)
	}

	e.login(t, ua)
	for _, path := range []string{"/resource/mixed/x", "/resource/opt/x"} {
		r := e.api(t, ua, http.MethodGet, path)
		if _, sub := last(); r.Status != http.StatusOK || sub != "alice" {
			t.Fatalf("%s logged in: %d %s, upstream subject %q; want alice's token", path, r.Status, r.Body, sub)
		}
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/svc/x"); r.Status != http.StatusOK {
		t.Fatalf("client route logged in: %d %s", r.Status, r.Body)
	}
	if _, sub := last(); sub != "" {
		t.Fatalf("client route logged in sent the user's token (subject %q)", sub)
	}
}

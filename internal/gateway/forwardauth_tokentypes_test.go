package gateway_test

import (
	"testing"

	"github.com/moat-bff/moat/internal/config"
)

// TestForwardAuthTokenTypes: forward-auth lends the token a proxied call
// of the route would carry, for every token type (docs/gateways.md), and
// an empty Authorization where there is none.
func TestForwardAuthTokenTypes(t *testing.T) {
	f := newFAEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/svc/", Upstream: "http://127.0.0.1:1/svc/", Token: config.TokenClient, ClientScopes: []string{"svc:read"}, Methods: []string{"GET"}},
			config.Route{Prefix: "/resource/mixed/", Upstream: "http://127.0.0.1:1/mixed/", Token: config.TokenUserOrClient, Methods: []string{"GET"}},
			config.Route{Prefix: "/resource/opt/", Upstream: "http://127.0.0.1:1/opt/", Token: config.TokenOptionalUser, Methods: []string{"GET"}},
		)
	})
	subOf := func(b *browser, path string) string {
		t.Helper()
		r := f.check(b, "GET", path, "X-CSRF", "1")
		if r.StatusCode != 200 {
			t.Fatalf("%s: %s %s", path, r.Status, r.body)
		}
		if _, ok := r.Header["Authorization"]; !ok {
			t.Fatalf("%s: a grant without an Authorization header", path)
		}
		at := bearer(r)
		if at == "" {
			return ""
		}
		sub, ok := f.op.ValidAccessToken(at)
		if !ok {
			t.Fatalf("%s: the granted token is not one the OP issued", path)
		}
		return sub
	}
	b := f.browser()
	for path, want := range map[string]string{"/resource/svc/x": f.op.ClientID, "/resource/mixed/x": f.op.ClientID, "/resource/opt/x": ""} {
		if got := subOf(b, path); got != want {
			t.Errorf("without a session, %s lends a token of %q, want %q", path, got, want)
		}
	}
	b.login("/")
	for path, want := range map[string]string{"/resource/svc/x": f.op.ClientID, "/resource/mixed/x": "alice", "/resource/opt/x": "alice"} {
		if got := subOf(b, path); got != want {
			t.Errorf("with a session, %s lends a token of %q, want %q", path, got, want)
		}
	}
}

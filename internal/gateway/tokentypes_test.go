package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// TestTokenTypes: routes[].token client, user_or_client and optional_user
// send the upstream the token each promises, and nothing else.
func TestTokenTypes(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		up := e0(c)
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/svc/", Upstream: up + "/svc/", Token: config.TokenClient, ClientScopes: []string{"svc:read"}},
			config.Route{Prefix: "/resource/mixed/", Upstream: up + "/mixed/", Token: config.TokenUserOrClient},
			config.Route{Prefix: "/resource/opt/", Upstream: up + "/opt/", Token: config.TokenOptionalUser},
		)
	})
	anon := e.browser()
	sub := func(b *browser, path string) string {
		t.Helper()
		r := b.api("GET", path)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %s %s", path, r.Status, r.body)
		}
		s, _ := r.json(t)["sub"].(string)
		return s
	}
	lastAuth := func() string {
		reqs := e.upstream.requests()
		return reqs[len(reqs)-1].Header.Get("Authorization")
	}

	if got := sub(anon, "/resource/svc/x"); got != e.op.ClientID {
		t.Errorf("client route without a session: upstream saw sub %q, want the client %q", got, e.op.ClientID)
	}
	if scope, _ := e.op.AccessTokenScope(strings.TrimPrefix(lastAuth(), "Bearer ")); scope != "svc:read" {
		t.Errorf("client token asked for scope %q, want svc:read", scope)
	}
	if got := sub(anon, "/resource/mixed/x"); got != e.op.ClientID {
		t.Errorf("user_or_client without a session: sub %q, want the client", got)
	}
	if got := sub(anon, "/resource/opt/x"); got != "" || lastAuth() != "" {
		t.Errorf("optional_user without a session sent a token: sub %q, Authorization %q", got, lastAuth())
	}
	if r := anon.send("GET", "/resource/svc/x", nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("client route without X-CSRF = %s, want 403: CSRF applies to every route", r.Status)
	}

	user := e.browser()
	user.login("/")
	for path, want := range map[string]string{
		"/resource/svc/x": e.op.ClientID, "/resource/mixed/x": "alice", "/resource/opt/x": "alice", "/resource/api/x": "alice",
	} {
		if got := sub(user, path); got != want {
			t.Errorf("logged in, %s: upstream saw sub %q, want %q", path, got, want)
		}
	}
	for range 20 {
		sub(anon, "/resource/svc/x")
	}
	if n := e.op.Grants("client_credentials"); n != 2 {
		t.Errorf("%d client_credentials requests for 24 calls on two scope sets, want 2 (cached)", n)
	}

	// A session that ended (its refresh token refused) falls back, for
	// user_or_client, to the client token, with the cookie cleared.
	gone := e.browser()
	gone.login("/")
	e.expireAccessToken(gone.sessionCookie())
	e.op.Set(func(b *oidctest.Behavior) { b.RefreshError = "invalid_grant" })
	if got := sub(gone, "/resource/mixed/x"); got != e.op.ClientID {
		t.Errorf("user_or_client with a dead grant: sub %q, want the client", got)
	}
	if c := gone.sessionCookie(); c != nil {
		t.Errorf("user_or_client with a dead grant kept the session cookie %s", c.Name)
	}
	e.op.Set(func(b *oidctest.Behavior) { b.RefreshError = "" })
}

// TestClientTokenOutage: an IdP that cannot give a client token is a 503
// for that route only; nobody's session ends.
func TestClientTokenOutage(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/resource/svc/", Upstream: e0(c) + "/svc/", Token: config.TokenClient})
	})
	b := e.browser()
	b.login("/")
	before := len(e.upstream.requests())
	e.op.Set(func(b *oidctest.Behavior) { b.TokenStatus = http.StatusInternalServerError })
	r := b.api("GET", "/resource/svc/x")
	if r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
		t.Fatalf("client route with the IdP down = %s %s, want 503 unavailable", r.Status, r.body)
	}
	if len(e.upstream.requests()) != before {
		t.Fatal("a call without its token reached the upstream")
	}
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("the user's own route during the outage = %s, want 200", r.Status)
	}
	e.op.Set(func(b *oidctest.Behavior) { b.TokenStatus = 0 })
	if r := b.api("GET", "/resource/svc/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("client route after the outage = %s %s", r.Status, r.body)
	}
}

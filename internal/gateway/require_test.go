package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// TestRouteRules: routes[].require refuses a user without the right with
// 403 and a login that is too weak with 401 step_up_required and the login
// URL that meets the rule; after that login the call passes. A refused call
// never reaches the upstream.
func TestRouteRules(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.OIDC.ACRValues = []string{"urn:example:mfa"}
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/admin/", Upstream: e0(c) + "/admin/",
				Require: []config.Requirement{{Claim: "groups", AnyOf: []string{"admin"}}}},
			config.Route{Prefix: "/resource/payments/", Upstream: e0(c) + "/payments/",
				Require: []config.Requirement{{Claim: "groups", AnyOf: []string{"staff"}}, {ACR: []string{"urn:example:mfa"}}}},
		)
	}, func(p *oidctest.Provider) {
		p.AddUser(oidctest.User{Subject: "alice", Claims: map[string]any{"groups": []any{"staff"}}})
	})
	b := e.browser()
	b.login("/")

	before := len(e.upstream.requests())
	r := b.api("GET", "/resource/admin/users")
	if r.StatusCode != http.StatusForbidden || r.json(t)["error"] != "forbidden" {
		t.Fatalf("admin route without the admin group = %s %s, want 403 forbidden", r.Status, r.body)
	}
	r = b.api("GET", "/resource/payments/1")
	body := r.json(t)
	login, _ := body["login"].(string)
	if r.StatusCode != http.StatusUnauthorized || body["error"] != "step_up_required" ||
		login != e.url+"/auth/login?acr_values=urn%3Aexample%3Amfa" {
		t.Fatalf("payments with a password login = %s %s, want 401 step_up_required with the login URL", r.Status, r.body)
	}
	if n := len(e.upstream.requests()); n != before {
		t.Fatalf("refused calls reached the upstream %d times", n-before)
	}

	// The IdP now authenticates alice with MFA; the SPA follows the login URL.
	e.op.AddUser(oidctest.User{Subject: "alice", Claims: map[string]any{"groups": []any{"staff"}, "acr": "urn:example:mfa"}})
	r = b.get(strings.TrimPrefix(login, e.url) + "&returnTo=/")
	if r.StatusCode != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "acr_values=urn%3Aexample%3Amfa") {
		t.Fatalf("step-up login = %s, Location %q; want a redirect asking the IdP for the acr", r.Status, r.Header.Get("Location"))
	}
	r = b.get(r.Header.Get("Location"))
	b.get(r.Header.Get("Location"))
	if r := b.api("GET", "/resource/payments/1"); r.StatusCode != http.StatusOK {
		t.Fatalf("payments after the step-up = %s %s, want 200", r.Status, r.body)
	}
	if r := b.api("GET", "/resource/admin/users"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a step-up granted a right: admin route = %s", r.Status)
	}
}

// TestRouteScopes: a scope rule holds when the token response granted every
// listed scope (RFC 6749 §5.1); a missing one is a 403 that no login
// changes. A response without scope grants the scopes moat asked for; a
// refresh that narrows the scope narrows what the session may reach, and
// one that states no scope keeps it.
func TestRouteScopes(t *testing.T) {
	granted := func(s string) func(*oidctest.Behavior) {
		return func(b *oidctest.Behavior) { b.TokenScope = &s }
	}
	e := newEnv(t, func(c *config.Config) {
		c.OIDC.Scopes = []string{"openid", "profile", "offline_access", "orders:read"}
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/orders/", Upstream: e0(c) + "/orders/",
				Require: []config.Requirement{{Scope: []string{"orders:read", "openid"}}}},
			config.Route{Prefix: "/resource/admin/", Upstream: e0(c) + "/admin/",
				Require: []config.Requirement{{Scope: []string{"orders:admin"}}}},
		)
	})
	before := len(e.upstream.requests())
	b := e.browser()
	e.op.Set(granted("openid offline_access"))
	b.login("/")
	if r := b.api("GET", "/resource/orders/1"); r.StatusCode != http.StatusForbidden || r.json(t)["error"] != "forbidden" {
		t.Fatalf("orders without orders:read granted = %s %s, want 403 forbidden", r.Status, r.body)
	}
	if n := len(e.upstream.requests()); n != before {
		t.Fatalf("refused calls reached the upstream %d times", n-before)
	}

	e.op.Set(granted("orders:read  openid offline_access"))
	b.login("/")
	if r := b.api("GET", "/resource/orders/1"); r.StatusCode != http.StatusOK {
		t.Fatalf("orders with orders:read granted = %s %s, want 200", r.Status, r.body)
	}
	if r := b.api("GET", "/resource/admin/1"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("admin without orders:admin granted = %s %s, want 403", r.Status, r.body)
	}

	// A refresh without scope keeps the grant; one that narrows it narrows.
	e.op.Set(func(b *oidctest.Behavior) { b.TokenScope = nil })
	e.expireAccessToken(b.sessionCookie())
	if r := b.api("GET", "/resource/orders/1"); r.StatusCode != http.StatusOK {
		t.Fatalf("orders after a refresh stating no scope = %s %s, want 200", r.Status, r.body)
	}
	e.op.Set(granted("openid offline_access"))
	e.expireAccessToken(b.sessionCookie())
	if r := b.api("GET", "/resource/orders/1"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("orders after a refresh that dropped orders:read = %s %s, want 403", r.Status, r.body)
	}
	if n := e.op.Grants("refresh_token"); n != 2 {
		t.Fatalf("refresh grants = %d, want 2", n)
	}

	// No scope in the code response: what moat asked for (oidc.scopes).
	e.op.Set(func(b *oidctest.Behavior) { b.TokenScope = nil })
	b.login("/")
	if r := b.api("GET", "/resource/orders/1"); r.StatusCode != http.StatusOK {
		t.Fatalf("orders after a login whose response stated no scope = %s %s, want 200", r.Status, r.body)
	}
}

// e0 is the upstream URL a config mod can use before newEnv returns: the
// first route's upstream origin.
func e0(c *config.Config) string {
	u := c.Routes[0].Upstream
	return strings.TrimSuffix(u, "/api/")
}

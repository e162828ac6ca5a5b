package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/realop"
)

// TestRequestObjectLogin: with oidc.request_object every login sends a
// request object signed with the client key, by value or pushed, and the
// in-process OP (which takes nothing else) logs the user in; a key it does
// not know ends at its error page and no session.
func TestRequestObjectLogin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		par      bool
		pkj      bool // private_key_jwt too
		knownKey bool
	}{
		{name: "by value, client secret", knownKey: true},
		{name: "pushed, private_key_jwt", par: true, pkj: true, knownKey: true},
		{name: "unknown key", knownKey: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, ks := keyFile(t, "ES256")
			_, other := keyFile(t, "ES256")
			e := newEnv(t, func(c *config.Config) {
				c.OIDC.RequestObject = true
				c.OIDC.ClientKeyFile = path
				if tc.pkj {
					c.OIDC.ClientSecret = ""
					c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
				}
			}, func(p *oidctest.Provider) {
				p.Set(func(b *oidctest.Behavior) { b.PAR = tc.par })
				registered := ks.Public()
				if !tc.knownKey {
					registered = other.Public()
				}
				p.RequireRequestObjects(registered)
				if tc.pkj {
					p.UseClientKeys(ks.Public())
				}
			})
			b := e.browser()
			if !tc.knownKey {
				r := b.get("/auth/login?returnTo=/")
				r = b.get(r.Header.Get("Location"))
				if r.StatusCode != http.StatusBadRequest || b.sessionCookie() != nil || !strings.HasPrefix(e.op.RequestObjectError(), "signature") {
					t.Fatalf("authorize with an unknown key: %s, cookie %v, OP %q", r.Status, b.sessionCookie(), e.op.RequestObjectError())
				}
				return
			}
			b.login("/")
			if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
				t.Fatalf("API call: %s %s (OP: %q %q)", r.Status, r.body, e.op.RequestObjectError(), e.op.AssertionError())
			}
			if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusOK {
				t.Fatalf("logout: %s", r.Status)
			}
			pushed := 0
			for _, req := range e.op.Requests() {
				if req.Path == "/par" {
					pushed++
					if len(req.Form["request"]) != 1 || req.Form.Has("state") || req.Form.Has("code_challenge") {
						t.Errorf("pushed form %v, want the request object alone", keysOf(req.Form))
					}
				}
			}
			if (pushed == 1) != tc.par {
				t.Errorf("%d pushed requests with PAR %v", pushed, tc.par)
			}
		})
	}
}

func keysOf(v url.Values) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	return out
}

// TestRequestObjectUnsupported: a provider that does not advertise
// request objects with the key's algorithm makes moat check fail naming
// oidc.request_object, /readyz not ready, and a login a 5xx, not a login
// without the request object.
func TestRequestObjectUnsupported(t *testing.T) {
	path, _ := keyFile(t, "ES256")
	e := newEnv(t, func(c *config.Config) {
		c.OIDC.RequestObject = true
		c.OIDC.ClientKeyFile = path
	}, func(b *oidctest.Behavior) { b.RequestObjectAlgs = []string{"RS256"} })
	err := e.gw.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "oidc.request_object: ") || !strings.Contains(err.Error(), "ES256") {
		t.Fatalf("Check = %v", err)
	}
	b := e.browser()
	if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz: %s %s, want 503", r.Status, r.body)
	}
	if _, checks := adminReadyz(t, e.gw); !strings.Contains(checks["idp"], "oidc.request_object") {
		t.Errorf("admin readyz idp = %q, want it to name oidc.request_object", checks["idp"])
	}
	r := b.get("/auth/login?returnTo=/")
	if r.StatusCode < 500 || strings.Contains(r.Header.Get("Location"), e.op.Issuer) {
		t.Fatalf("login: %s to %s", r.Status, r.Header.Get("Location"))
	}
	for _, req := range e.op.Requests() {
		if req.Path == "/authorize" || req.Path == "/par" {
			t.Fatalf("an authorization request reached the OP: %s", req.Path)
		}
	}
}

// TestRealOPRequestObject: the whole life cycle against the real
// oidc-provider with a client that must send signed request objects
// (require_signed_request_object, request_object_signing_alg ES256, typ
// oauth-authz-req+jwt, exp, nbf and jti required): by value with a client
// secret, and pushed with private_key_jwt, the FAPI 2.0 combination.
func TestRealOPRequestObject(t *testing.T) {
	for _, tc := range []struct {
		name string
		par  string
		pkj  bool
	}{
		{name: "by value", par: "off"},
		{name: "pushed with private_key_jwt", par: "required", pkj: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, ks := keyFile(t, "ES256")
			jwks, _ := json.Marshal(ks.Public())
			opts := realop.Options{ClientJWKS: jwks, RequestObjectSigningAlg: "ES256", RequirePAR: tc.par == "required"}
			if tc.pkj {
				opts.ClientAuthMethod = config.AuthPrivateKeyJWT
			}
			e := newRealEnv(t, opts, func(c *config.Config) {
				c.OIDC.RequestObject = true
				c.OIDC.ClientKeyFile = path
				c.OIDC.PAR = tc.par
				if tc.pkj {
					c.OIDC.ClientSecret = ""
					c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
				}
			})
			if err := e.gw.Check(context.Background()); err != nil {
				t.Fatalf("moat check: %v", err)
			}
			ua := e.op.UserAgent("alice")
			e.login(t, ua)
			if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
				t.Fatalf("API call: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
			}
			e.logout(t, ua)
			if e.loggedIn(t, ua) {
				t.Fatal("still logged in after logout")
			}
		})
	}
}

// TestRealOPRefusesRequestWithoutObject proves the real provider's client
// is strict: without oidc.request_object the same login fails, so the
// test above passes because of the request object.
func TestRealOPRefusesRequestWithoutObject(t *testing.T) {
	_, ks := keyFile(t, "ES256")
	jwks, _ := json.Marshal(ks.Public())
	e := newRealEnv(t, realop.Options{ClientJWKS: jwks, RequestObjectSigningAlg: "ES256"}, func(c *config.Config) { c.OIDC.PAR = "off" })
	ua := e.op.UserAgent("alice")
	ua.Browse(context.Background(), e.url+"/auth/login?returnTo=/after-login")
	if e.loggedIn(t, ua) || !strings.Contains(e.logs.String(), "Request Object must be used by this client") {
		t.Fatalf("a login without a request object was not refused: %s", e.logs.String())
	}
}

// TestRequestObjectResources: several RFC 8707 resources travel in the
// request object as an array, so the grant names each and every route's
// resource-restricted token can be had.
func TestRequestObjectResources(t *testing.T) {
	for _, par := range []bool{false, true} {
		path, ks := keyFile(t, "ES256")
		var op *oidctest.Provider
		a, b := newResourceUpstream(t, &op), newResourceUpstream(t, &op)
		e := newEnv(t, func(c *config.Config) {
			c.OIDC.RequestObject = true
			c.OIDC.ClientKeyFile = path
			c.Routes = append(c.Routes,
				config.Route{Prefix: "/resource/a/", Upstream: a.URL + "/", Resource: "https://api-a.example/"},
				config.Route{Prefix: "/resource/b/", Upstream: b.URL + "/", Resource: "https://api-b.example/"},
			)
		}, func(p *oidctest.Provider) {
			p.Set(func(b *oidctest.Behavior) { b.PAR = par })
			p.RequireRequestObjects(ks.Public())
		})
		op = e.op
		br := e.browser()
		br.login("/")
		for _, up := range []struct {
			path string
			u    *resourceUpstream
			want string
		}{{"/resource/a/x", a, "https://api-a.example/"}, {"/resource/b/x", b, "https://api-b.example/"}} {
			if r := br.api("GET", up.path); r.StatusCode != http.StatusOK {
				t.Fatalf("par=%v %s: %s %s (OP: %q)", par, up.path, r.Status, r.body, e.op.RequestObjectError())
			}
			if got := up.u.last(); got != up.want {
				t.Fatalf("par=%v %s: token for %q", par, up.path, got)
			}
		}
	}
}

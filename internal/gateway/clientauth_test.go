package gateway_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/moat-bff/moat/internal/clientauth"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/realop"
)

// keyFile writes a new private_key_jwt key and returns its path and keys.
func keyFile(t *testing.T, alg string) (string, *clientauth.Keys) {
	t.Helper()
	pemKey, err := clientauth.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client-key.pem")
	os.WriteFile(path, pemKey, 0o600)
	ks, err := clientauth.Parse(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	return path, ks
}

// TestPrivateKeyJWT: with client_auth_method private_key_jwt, every
// client-authenticated call (code exchange, refresh, revocation at logout)
// carries a fresh assertion the OP verifies, and no secret; the public keys
// are served at /auth/jwks.
func TestPrivateKeyJWT(t *testing.T) {
	for _, aud := range []string{config.AssertionAudIssuer, config.AssertionAudEndpoint} {
		t.Run(aud, func(t *testing.T) {
			path, ks := keyFile(t, "ES256")
			e := newEnv(t, func(c *config.Config) {
				c.OIDC.ClientSecret = ""
				c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
				c.OIDC.ClientKeyFile = path
				c.OIDC.ClientAssertionAudience = aud
			}, func(p *oidctest.Provider) { p.UseClientKeys(ks.Public()) })
			b := e.browser()
			b.login("/")
			c := b.sessionCookie()
			if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
				t.Fatalf("API call: %s %s (OP: %s)", r.Status, r.body, e.op.AssertionError())
			}
			e.expireAccessToken(c)
			if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
				t.Fatalf("API call after expiry: %s %s (OP: %s)", r.Status, r.body, e.op.AssertionError())
			}
			if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusOK {
				t.Fatalf("logout: %s", r.Status)
			}
			e.eventually("the refresh token is revoked", func() bool { return countAuth(e.op, "/revoke") > 0 })
			for _, path := range []string{"/token", "/revoke"} {
				for _, req := range e.op.Requests() {
					if req.Path == path && req.ClientAuth != "private_key_jwt" {
						t.Errorf("%s used %q, want private_key_jwt only", path, req.ClientAuth)
					}
				}
			}
			if e.op.Grants("authorization_code") != 1 || e.op.Grants("refresh_token") != 1 {
				t.Errorf("grants: %d codes, %d refreshes", e.op.Grants("authorization_code"), e.op.Grants("refresh_token"))
			}

			r := b.get("/auth/jwks")
			var set jose.JSONWebKeySet
			if r.StatusCode != http.StatusOK || json.Unmarshal(r.body, &set) != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() {
				t.Fatalf("/auth/jwks: %s %s", r.Status, r.body)
			}
			if strings.Contains(string(r.body), `"d"`) {
				t.Fatal("/auth/jwks publishes a private key")
			}
		})
	}
}

func countAuth(op *oidctest.Provider, path string) int {
	n := 0
	for _, r := range op.Requests() {
		if r.Path == path && r.ClientAuth != "" {
			n++
		}
	}
	return n
}

// TestPrivateKeyJWTWrongKey: a key the IdP does not know is refused, the
// login fails with moat's error page, and no session exists.
func TestPrivateKeyJWTWrongKey(t *testing.T) {
	path, _ := keyFile(t, "ES256")
	_, other := keyFile(t, "ES256")
	e := newEnv(t, func(c *config.Config) {
		c.OIDC.ClientSecret = ""
		c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
		c.OIDC.ClientKeyFile = path
	}, func(p *oidctest.Provider) { p.UseClientKeys(other.Public()) })
	b := e.browser()
	r := b.get("/auth/login?returnTo=/")
	r = b.get(r.Header.Get("Location"))
	r = b.get(r.Header.Get("Location"))
	if r.StatusCode < 500 || b.sessionCookie() != nil {
		t.Fatalf("callback with a refused client assertion: %s, cookie %v", r.Status, b.sessionCookie())
	}
	if !strings.HasPrefix(e.op.AssertionError(), "signature") {
		t.Fatalf("the OP refused it for %q, want a signature error", e.op.AssertionError())
	}
}

// TestRealOPPrivateKeyJWT: the whole life cycle against the real
// oidc-provider with private_key_jwt alone (the client has no usable
// secret): login, an API call whose token the provider confirms, a
// refresh, and logout with the refresh token revoked.
func TestRealOPPrivateKeyJWT(t *testing.T) {
	path, ks := keyFile(t, "ES256")
	jwks, _ := json.Marshal(ks.Public())
	e := newRealEnv(t, realop.Options{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientJWKS: jwks}, func(c *config.Config) {
		c.OIDC.ClientSecret = ""
		c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
		c.OIDC.ClientKeyFile = path
	})
	ua := e.op.UserAgent("alice")
	e.login(t, ua)
	if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
		t.Fatalf("API call: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
	}
	first := e.tokens(t, ua)
	e.expire(t, ua)
	if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK {
		t.Fatalf("API call after expiry: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
	}
	if e.tokens(t, ua).AccessToken == first.AccessToken {
		t.Fatal("no refresh happened")
	}
	e.logout(t, ua)
}

package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/realop"
)

// TestMTLSLogin: with client_auth_method self_signed_tls_client_auth moat
// presents oidc.client_cert_file to an https IdP that asks for it, and
// every client-authenticated call (PAR, code exchange, revocation at
// logout) and UserInfo goes to the IdP's mtls_endpoint_aliases with no
// secret; a certificate the IdP does not know fails the login.
func TestMTLSLogin(t *testing.T) {
	for _, known := range []bool{true, false} {
		certFile, keyFile, leaf := oidctest.WriteClientCert(t)
		_, _, other := oidctest.WriteClientCert(t)
		var op *oidctest.Provider
		e := newEnv(t, func(c *config.Config) {
			op = oidctest.NewTLS(t, c.PublicURL+"/auth/callback")
			op.Set(func(b *oidctest.Behavior) { b.PAR = true })
			if known {
				op.UseSelfSignedClientCert(leaf)
			} else {
				op.UseSelfSignedClientCert(other)
			}
			c.OIDC.Issuer, c.OIDC.ClientID, c.OIDC.ClientSecret = op.Issuer, op.ClientID, ""
			c.OIDC.ClientAuthMethod = config.AuthSelfSignedTLS
			c.OIDC.ClientCertFile, c.OIDC.ClientKeyFile = certFile, keyFile
			c.OIDC.CAFile = op.CAFile(t)
		})
		b := e.browser()
		r := b.get("/auth/login?returnTo=/")
		if !known {
			if r.StatusCode < 500 || !strings.Contains(op.CertError(), "not the registered certificate") {
				t.Fatalf("login with an unknown certificate: %s, provider %q", r.Status, op.CertError())
			}
			continue
		}
		if r.StatusCode != http.StatusFound {
			t.Fatalf("login: %s %s (provider: %q)", r.Status, r.body, op.CertError())
		}
		b.finishLoginTLS(op, r)
		if b.sessionCookie() == nil {
			t.Fatalf("no session (provider: %q)", op.CertError())
		}
		if r := b.api("GET", "/auth/userinfo"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), "alice@example.com") {
			t.Fatalf("userinfo: %s %s", r.Status, r.body)
		}
		if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusOK {
			t.Fatalf("logout: %s", r.Status)
		}
		e.eventually("the refresh token is revoked", func() bool {
			for _, req := range op.Requests() {
				if req.Path == "/revoke" {
					return true
				}
			}
			return false
		})
		for _, req := range op.Requests() {
			if req.Method == http.MethodPost || req.Path == "/userinfo" {
				if !req.MTLS || (req.Method == http.MethodPost && req.ClientAuth != "tls_client_auth") {
					t.Errorf("%s %s: mtls alias %v, client auth %q", req.Method, req.Path, req.MTLS, req.ClientAuth)
				}
			}
		}
	}
}

// TestMTLSBoundTokens: the IdP binds access tokens to moat's certificate
// (RFC 8705 §3, cnf x5t#S256); an upstream that enforces the binding
// accepts them when the route presents the same certificate
// (routes[].client_cert_file and client_key_file), and refuses the token
// on a route that does not.
func TestMTLSBoundTokens(t *testing.T) {
	certFile, keyFile, leaf := oidctest.WriteClientCert(t)
	var op *oidctest.Provider
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		bound := op.AccessTokenCertBinding(at)
		if bound == "" || len(r.TLS.PeerCertificates) == 0 || oidctest.CertThumbprint(r.TLS.PeerCertificates[0]) != bound {
			w.WriteHeader(http.StatusUnauthorized) // RFC 8705 §3: the presenter does not hold the bound key
			return
		}
		io.WriteString(w, `{"bound":true}`)
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	up.StartTLS()
	t.Cleanup(up.Close)
	upCA := serverCAFile(t, up)
	e := newEnv(t, func(c *config.Config) {
		op = oidctest.NewTLS(t, c.PublicURL+"/auth/callback")
		op.UseSelfSignedClientCert(leaf)
		c.OIDC.Issuer, c.OIDC.ClientID, c.OIDC.ClientSecret = op.Issuer, op.ClientID, ""
		c.OIDC.ClientAuthMethod = config.AuthSelfSignedTLS
		c.OIDC.ClientCertFile, c.OIDC.ClientKeyFile = certFile, keyFile
		c.OIDC.CAFile = op.CAFile(t)
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/bound/", Upstream: up.URL + "/", CAFile: upCA, ClientCertFile: certFile, ClientKeyFile: keyFile},
			config.Route{Prefix: "/unbound/", Upstream: up.URL + "/", CAFile: upCA})
	})
	b := e.browser()
	r := b.get("/auth/login?returnTo=/")
	b.finishLoginTLS(op, r)
	if r := b.api("GET", "/bound/x"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"bound":true`) {
		t.Fatalf("bound route: %s %s", r.Status, r.body)
	}
	if r := b.api("GET", "/unbound/x"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a route without the certificate: %s, want the upstream's 401", r.Status)
	}
}

// TestRealOPMTLS: the whole life cycle against the real oidc-provider on
// https with self_signed_tls_client_auth (the certificate registered as
// x5c) and certificate-bound access tokens: login, an API call whose token
// the provider confirms, UserInfo (which the provider answers only to the
// bound certificate), a refresh, and logout with the refresh token revoked.
func TestRealOPMTLS(t *testing.T) {
	certFile, keyFile, leaf := oidctest.WriteClientCert(t)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: leaf.PublicKey, Certificates: []*x509.Certificate{leaf}, Use: "sig"}}})
	e := newRealEnv(t, realop.Options{TLS: true, ClientAuthMethod: config.AuthSelfSignedTLS, ClientJWKS: jwks}, func(c *config.Config) {
		c.OIDC.ClientSecret = ""
		c.OIDC.ClientAuthMethod = config.AuthSelfSignedTLS
		c.OIDC.ClientCertFile, c.OIDC.ClientKeyFile = certFile, keyFile
	})
	ua := e.op.UserAgent("alice")
	e.login(t, ua)
	if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
		t.Fatalf("API call: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
	}
	if r := e.api(t, ua, http.MethodGet, "/auth/userinfo"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "alice@example.test") {
		t.Fatalf("userinfo: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
	}
	first := e.tokens(t, ua)
	in, err := e.op.Introspection(first.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if cnf, _ := in["cnf"].(map[string]any); cnf["x5t#S256"] != oidctest.CertThumbprint(leaf) {
		t.Fatalf("the access token is not bound to moat's certificate: cnf %v", in["cnf"])
	}
	e.expire(t, ua)
	if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK {
		t.Fatalf("API call after expiry: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
	}
	if e.tokens(t, ua).AccessToken == first.AccessToken {
		t.Fatal("no refresh happened")
	}
	e.logout(t, ua)
}

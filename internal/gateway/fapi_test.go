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

	"github.com/moat-bff/moat/internal/clientauth"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/realop"
)

// fapi2Env starts moat with oidc.profile fapi2 and private_key_jwt plus a
// TLS client certificate against an https provider configured for FAPI
// 2.0 (PAR, iss parameter, ES256 ID tokens, certificate-bound tokens);
// behave may break the provider's discovery document.
func fapi2Env(t *testing.T, certFile, keyFile string, behave func(*oidctest.Behavior), routes ...config.Route) (*env, *oidctest.Provider) {
	t.Helper()
	ks, err := clientauth.Load(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var op *oidctest.Provider
	e := newEnv(t, func(c *config.Config) {
		op = oidctest.NewTLS(t, c.PublicURL+"/auth/callback")
		op.RotateKeyES256()
		op.UseClientKeys(ks.Public())
		op.Set(func(b *oidctest.Behavior) {
			b.PAR, b.AdvertiseIss = true, true
			if behave != nil {
				behave(b)
			}
		})
		c.OIDC.Issuer, c.OIDC.ClientID, c.OIDC.ClientSecret = op.Issuer, op.ClientID, ""
		c.OIDC.Profile = config.ProfileFAPI2
		c.OIDC.PAR = "" // fapi2 makes it required
		c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
		c.OIDC.ClientCertFile, c.OIDC.ClientKeyFile = certFile, keyFile
		c.OIDC.CAFile = op.CAFile(t)
		c.Routes = append(c.Routes, routes...)
	})
	return e, op
}

// TestFAPI2Login: under oidc.profile fapi2 with private_key_jwt and
// oidc.client_cert_file, a login pushes its request over mTLS, the code is
// redeemed with an assertion and the certificate, the access token is
// bound to the certificate (RFC 8705 §3) and accepted by an upstream that
// enforces the binding, and logout revokes the grant.
func TestFAPI2Login(t *testing.T) {
	certFile, keyFile, _ := oidctest.WriteClientCert(t)
	var op *oidctest.Provider
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		bound := op.AccessTokenCertBinding(at)
		if bound == "" || len(r.TLS.PeerCertificates) == 0 || oidctest.CertThumbprint(r.TLS.PeerCertificates[0]) != bound {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"bound":true}`)
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	up.StartTLS()
	t.Cleanup(up.Close)
	upCA := serverCAFile(t, up)
	e, p := fapi2Env(t, certFile, keyFile, nil,
		config.Route{Prefix: "/bound/", Upstream: up.URL + "/", CAFile: upCA, ClientCertFile: certFile, ClientKeyFile: keyFile})
	op = p

	b := e.browser()
	if r := b.get("/readyz"); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz against a FAPI 2.0 provider: %s %s", r.Status, r.body)
	}
	r := b.get("/auth/login?returnTo=/")
	if r.StatusCode != http.StatusFound {
		t.Fatalf("login: %s %s (provider: %q %q)", r.Status, r.body, op.CertError(), op.AssertionError())
	}
	if loc := r.Header.Get("Location"); !strings.Contains(loc, "request_uri=") || strings.Contains(loc, "code_challenge") {
		t.Fatalf("the authorization request was not pushed: %s", loc)
	}
	b.finishLoginTLS(op, r)
	c := b.sessionCookie()
	if c == nil {
		t.Fatalf("no session (provider: %q %q)", op.CertError(), op.AssertionError())
	}
	if op.AccessTokenCertBinding(e.accessToken(c)) == "" {
		t.Fatal("the access token is not bound to moat's certificate")
	}
	if r := b.api("GET", "/bound/x"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"bound":true`) {
		t.Fatalf("API call: %s %s", r.Status, r.body)
	}
	if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusOK {
		t.Fatalf("logout: %s", r.Status)
	}
	e.eventually("the refresh token is revoked", func() bool { return countAuth(op, "/revoke") > 0 })
	for _, req := range op.Requests() {
		if req.Method == http.MethodPost && (!req.MTLS || req.ClientAuth != "private_key_jwt" || req.Form.Has("client_secret")) {
			t.Errorf("%s %s: mtls alias %v, client auth %q", req.Method, req.Path, req.MTLS, req.ClientAuth)
		}
	}
}

// TestFAPI2DiscoveryNotReady: a provider whose discovery document cannot
// meet FAPI 2.0 makes /readyz not ready and moat check fail, naming
// oidc.profile, and logins are refused before the browser is sent there.
func TestFAPI2DiscoveryNotReady(t *testing.T) {
	certFile, keyFile, _ := oidctest.WriteClientCert(t)
	e, op := fapi2Env(t, certFile, keyFile, func(b *oidctest.Behavior) {
		b.MutateDiscovery = func(doc map[string]any) { doc["id_token_signing_alg_values_supported"] = []string{"RS256"} }
	})
	b := e.browser()
	r := b.get("/readyz")
	_, checks := adminReadyz(t, e.gw)
	const want = "oidc.profile: fapi2, but the provider's id_token_signing_alg_values_supported"
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(checks["idp"], want) {
		t.Fatalf("readyz: %s idp=%q", r.Status, checks["idp"])
	}
	if err := e.gw.Check(t.Context()); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("check: %v", err)
	}
	if r := b.get("/auth/login?returnTo=/"); r.StatusCode == http.StatusFound {
		t.Fatalf("login redirected to %s", r.Header.Get("Location"))
	}
	if countAuth(op, "/par") > 0 {
		t.Fatal("the authorization request was pushed anyway")
	}
}

// TestRealOPFAPI2: moat under oidc.profile fapi2 against the real
// oidc-provider configured for FAPI 2.0 (https, PAR required,
// self_signed_tls_client_auth, certificate-bound access tokens, ES256 ID
// tokens): its discovery document meets every check, and a login, an API
// call with a certificate-bound token, and logout with the refresh token
// revoked all work.
func TestRealOPFAPI2(t *testing.T) {
	for _, method := range []string{config.AuthSelfSignedTLS, config.AuthPrivateKeyJWT} {
		t.Run(method, func(t *testing.T) { realOPFAPI2(t, method) })
	}
}

func realOPFAPI2(t *testing.T, method string) {
	certFile, keyFile, leaf := oidctest.WriteClientCert(t)
	ks, err := clientauth.Load(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := ks.Signing()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: leaf.PublicKey, KeyID: kid, Certificates: []*x509.Certificate{leaf}, Use: "sig"}}})
	e := newRealEnv(t, realop.Options{TLS: true, RequirePAR: true, IDTokenSigningAlg: "ES256", ClientAuthMethod: method, ClientJWKS: jwks}, func(c *config.Config) {
		c.OIDC.ClientSecret = ""
		c.OIDC.Profile = config.ProfileFAPI2
		c.OIDC.ClientAuthMethod = method
		c.OIDC.ClientCertFile, c.OIDC.ClientKeyFile = certFile, keyFile
	})
	if err := e.gw.Check(t.Context()); err != nil {
		t.Fatalf("moat check against a FAPI 2.0 oidc-provider: %v", err)
	}
	ua := e.op.UserAgent("alice")
	e.login(t, ua)
	if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
		t.Fatalf("API call: %d %s\n%s", r.Status, r.Body, e.op.Stderr())
	}
	tok := e.tokens(t, ua)
	in, err := e.op.Introspection(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if cnf, _ := in["cnf"].(map[string]any); cnf["x5t#S256"] != oidctest.CertThumbprint(leaf) {
		t.Fatalf("the access token is not bound to moat's certificate: cnf %v", in["cnf"])
	}
	e.logout(t, ua)
}

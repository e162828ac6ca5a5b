package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
)

// The validation of oidc.* client settings and of routes[]: each bad
// setting is an error naming its key.

// validateOIDC validates the smallest configuration around o (issuer and
// client ID filled in).
func validateOIDC(o config.OIDC) error {
	o.Issuer, o.ClientID = "http://127.0.0.1:9", "c"
	c := &config.Config{Listen: "127.0.0.1:0", PublicURL: "http://127.0.0.1:4001", OIDC: o}
	c.SetDefaults()
	return c.Validate()
}

// validateRoute validates the smallest configuration with r as its only
// route (prefix /api/, upstream filled in).
func validateRoute(r config.Route) error {
	r.Prefix, r.Upstream = "/api/", "http://127.0.0.1:9/"
	c := &config.Config{Listen: "127.0.0.1:0", PublicURL: "http://127.0.0.1:4001",
		OIDC: config.OIDC{Issuer: "http://127.0.0.1:9", ClientID: "c", ClientSecret: "s"}, Routes: []config.Route{r}}
	c.SetDefaults()
	return c.Validate()
}

// wantConfigErr fails t unless err contains want, or is nil when want is "".
func wantConfigErr(t *testing.T, what any, err error, want string) {
	t.Helper()
	if want == "" && err != nil {
		t.Errorf("Validate(%+v) = %v, want it valid", what, err)
	}
	if want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
		t.Errorf("Validate(%+v) = %v, want %q", what, err, want)
	}
}

// TestPrivateKeyJWTConfig: the settings name their key.
func TestPrivateKeyJWTConfig(t *testing.T) {
	_, path, _ := clientFiles(t)
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	for _, tc := range []struct {
		o    config.OIDC
		want string
	}{
		{config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT}, "oidc.client_key_file: is required with client_auth_method: private_key_jwt"},
		{config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientKeyFile: bad}, "oidc.client_key_file: no private key found"},
		{config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientKeyFile: path, ClientAssertionAudience: "token"}, `oidc.client_assertion_audience: "token" is not an audience`},
		{config.OIDC{ClientSecret: "s", ClientKeyFile: path}, "oidc.client_key_file: is used only with client_auth_method: private_key_jwt"},
		{config.OIDC{ClientAuthMethod: "client_secret_jwt", ClientSecret: "s"}, `oidc.client_auth_method: "client_secret_jwt" is not supported`},
	} {
		err := validateOIDC(tc.o)
		wantConfigErr(t, tc.o, err, tc.want)
		if err != nil && strings.Contains(err.Error(), "oidc.client_secret") {
			t.Errorf("private_key_jwt still asks for a client secret: %v", err)
		}
	}
}

// TestMTLSConfig: the mTLS settings name their keys.
func TestMTLSConfig(t *testing.T) {
	certFile, keyFile, _ := clientFiles(t)
	_, otherKey, _ := clientFiles(t)
	for _, tc := range []struct {
		o    config.OIDC
		want string // "" valid
	}{
		{config.OIDC{ClientAuthMethod: config.AuthTLSClient}, "oidc.client_cert_file: and oidc.client_key_file are required with client_auth_method: tls_client_auth"},
		{config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: certFile, ClientKeyFile: otherKey}, "oidc.client_cert_file: with oidc.client_key_file: tls: private key does not match public key"},
		{config.OIDC{ClientSecret: "s", ClientCertFile: certFile}, "oidc.client_cert_file: is used only with client_auth_method: tls_client_auth, self_signed_tls_client_auth or private_key_jwt"},
		{config.OIDC{ClientAuthMethod: config.AuthTLSClient, ClientCertFile: certFile, ClientKeyFile: keyFile}, ""},
		{config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: certFile, ClientKeyFile: keyFile, RequestObject: true}, ""},
	} {
		wantConfigErr(t, tc.o, validateOIDC(tc.o), tc.want)
	}
}

// TestRequestObjectConfig: request_object needs client_key_file, and the
// key file is no longer refused with a client secret when it signs
// request objects.
func TestRequestObjectConfig(t *testing.T) {
	_, path, _ := clientFiles(t)
	for _, tc := range []struct {
		o    config.OIDC
		want string // "" valid
	}{
		{config.OIDC{ClientSecret: "s", RequestObject: true}, "oidc.client_key_file: is required with request_object: true"},
		{config.OIDC{ClientSecret: "s", RequestObject: true, ClientKeyFile: path}, ""},
		{config.OIDC{ClientSecret: "s", ClientKeyFile: path}, "oidc.client_key_file: is used only with client_auth_method: private_key_jwt, tls_client_auth or self_signed_tls_client_auth, or request_object: true"},
		{config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientKeyFile: path, RequestObject: true}, ""},
	} {
		wantConfigErr(t, tc.o, validateOIDC(tc.o), tc.want)
	}
}

// TestRouteRulesConfig: a malformed rule is a configuration error naming
// its key.
func TestRouteRulesConfig(t *testing.T) {
	for _, tc := range []struct {
		req  []config.Requirement
		tok  string
		want string
	}{
		{[]config.Requirement{{Claim: "groups"}}, "", "routes[0].require[0]: a claim rule needs exactly one of any_of or all_of"},
		{[]config.Requirement{{Claim: "groups", AnyOf: []string{"a"}, ACR: []string{"x"}}}, "", "routes[0].require[0]: set exactly one of"},
		{[]config.Requirement{{ACR: []string{"urn:gold"}}}, "", `routes[0].require[0].acr: "urn:gold" is not in oidc.acr_values`},
		{[]config.Requirement{{Claim: "groups", AnyOf: []string{"a"}}}, config.TokenNone, "routes[0].require: needs token: user"},
		{[]config.Requirement{{Scope: []string{"orders:read orders:write"}}}, "", `routes[0].require[0].scope: "orders:read orders:write" is not a scope`},
		{[]config.Requirement{{Scope: []string{}}}, "", "routes[0].require[0]: a list of values must not be empty"},
		{[]config.Requirement{{Scope: []string{"a"}, MaxAge: config.Duration(60e9)}}, "", "routes[0].require[0]: set exactly one of claim, acr, amr, max_age or scope"},
	} {
		wantConfigErr(t, tc.req, validateRoute(config.Route{Token: tc.tok, Require: tc.req}), tc.want)
	}
}

// TestResourceConfig: a bad resource names its key.
func TestResourceConfig(t *testing.T) {
	for _, tc := range []struct {
		r    config.Route
		want string
	}{
		{config.Route{Resource: "api-a"}, `routes[0].resource: "api-a" must be an absolute URI`},
		{config.Route{Resource: "https://a.example/#x"}, "without a fragment"},
		{config.Route{Resource: "https://a.example/", Token: config.TokenClient}, "routes[0].resource: needs token: user"},
	} {
		wantConfigErr(t, tc.r, validateRoute(tc.r), tc.want)
	}
}

// TestTokenExchangeConfig: bad token_exchange settings name their key.
func TestTokenExchangeConfig(t *testing.T) {
	for _, tc := range []struct {
		r    config.Route
		want string
	}{
		{config.Route{TokenExchange: &config.TokenExchange{}}, "routes[0].token_exchange: needs audience or resource"},
		{config.Route{TokenExchange: &config.TokenExchange{Resource: "api-b"}}, `routes[0].token_exchange.resource: "api-b" must be an absolute URI`},
		{config.Route{TokenExchange: &config.TokenExchange{Resource: "https://b.example/#f"}}, "without a fragment"},
		{config.Route{TokenExchange: &config.TokenExchange{Audience: "a", Scope: []string{"a b"}}}, "routes[0].token_exchange.scope[0]"},
		{config.Route{TokenExchange: &config.TokenExchange{Audience: " a"}}, "routes[0].token_exchange.audience"},
		{config.Route{TokenExchange: &config.TokenExchange{Audience: "a"}, Token: config.TokenClient}, "routes[0].token_exchange: needs token: user"},
		{config.Route{TokenExchange: &config.TokenExchange{Audience: "a"}, Resource: "https://a.example/"}, "routes[0].token_exchange: cannot be combined with routes[].resource"},
	} {
		wantConfigErr(t, tc.r.TokenExchange, validateRoute(tc.r), tc.want)
	}
}

// TestTokenTypesConfig: bad token settings name their key.
func TestTokenTypesConfig(t *testing.T) {
	for _, tc := range []struct {
		r    config.Route
		want string
	}{
		{config.Route{Token: "bearer"}, `routes[0].token: "bearer" is not a token type`},
		{config.Route{Token: config.TokenUser, ClientScopes: []string{"a"}}, "routes[0].client_scopes: applies only to token: client or user_or_client"},
		{config.Route{Token: config.TokenOptionalUser, Require: []config.Requirement{{Claim: "g", AnyOf: []string{"a"}}}}, "routes[0].require: needs token: user"},
	} {
		wantConfigErr(t, tc.r, validateRoute(tc.r), tc.want)
	}
}

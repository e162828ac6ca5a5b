package oidc_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// fapi2Provider is an https provider configured for FAPI 2.0: PAR, the
// iss parameter, ES256 ID tokens, mTLS client authentication with the
// self-signed certificate cert and certificate-bound tokens.
func fapi2Provider(t *testing.T) (*oidctest.Provider, *oidc.Client, func(mutate func(map[string]any)) *oidc.Client) {
	t.Helper()
	self := oidctest.NewClientCert(t, "moat-fapi2", nil, false)
	p := oidctest.NewTLS(t, redirect)
	p.RotateKeyES256()
	p.UseSelfSignedClientCert(self.Leaf)
	client := func(mutate func(map[string]any)) *oidc.Client {
		p.Set(func(b *oidctest.Behavior) { b.PAR, b.AdvertiseIss, b.MutateDiscovery = true, true, mutate })
		return newClient(t, p, func(cfg *oidc.Config) {
			cfg.AuthMethod, cfg.ClientSecret, cfg.Profile = oidc.MTLSSelfSigned, "", oidc.ProfileFAPI2
			cfg.PAR = oidc.PARAuto // fapi2 forces required
			cfg.HTTPClient = mtlsClient(p, &self)
		})
	}
	return p, client(nil), client
}

// fapi2Login runs one login through the provider and returns the
// authorization response's query.
func fapi2Login(t *testing.T, p *oidctest.Provider, c *oidc.Client, verifier string) url.Values {
	t.Helper()
	u, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier})
	if err != nil {
		t.Fatalf("AuthCodeURL: %v (provider: %q)", err, p.CertError())
	}
	if q, _ := url.Parse(u); !q.Query().Has("request_uri") || q.Query().Has("code_challenge") {
		t.Fatalf("the authorization request was not pushed: %s", u)
	}
	browser := mtlsClient(p, nil)
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return loc.Query()
}

// TestFAPI2Login: under oidc.profile fapi2 a login against a FAPI 2.0
// provider pushes its request (PAR), checks iss, redeems the code over
// mTLS with PKCE, and gets certificate-bound tokens signed with ES256.
func TestFAPI2Login(t *testing.T) {
	p, c, _ := fapi2Provider(t)
	md, err := c.Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Mismatches(md); len(m) != 0 {
		t.Fatalf("mismatches against a FAPI 2.0 provider: %q", m)
	}
	const verifier = "verifier-verifier-verifier-verifier-verifier"
	q := fapi2Login(t, p, c, verifier)
	if err := c.CheckIssuer(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	tok, _, err := c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1"})
	if err != nil {
		t.Fatalf("exchange: %v (provider: %q)", err, p.CertError())
	}
	if p.AccessTokenCertBinding(tok.AccessToken) == "" {
		t.Fatal("the access token is not bound to the client certificate")
	}
}

// TestFAPI2RequiresIss: under fapi2 an authorization response without iss
// is refused even when the provider does not advertise the parameter
// (RFC 9207 §2.4 makes it optional then; FAPI 2.0 does not).
func TestFAPI2RequiresIss(t *testing.T) {
	_, _, client := fapi2Provider(t)
	c := client(func(doc map[string]any) { doc["authorization_response_iss_parameter_supported"] = false })
	err := c.CheckIssuer(context.Background(), url.Values{"code": {"x"}, "state": {"st"}})
	if !errors.Is(err, oidc.ErrRejected) || !strings.Contains(err.Error(), "fapi2") {
		t.Fatalf("CheckIssuer without iss = %v, want a fapi2 refusal", err)
	}
}

// TestFAPI2RefusesRS256IDToken: under fapi2 the ID token verifier accepts
// only PS256, ES256 and EdDSA (FAPI 2.0 §5.4.1), even if the provider
// lists RS256 too.
func TestFAPI2RefusesRS256IDToken(t *testing.T) {
	p := oidctest.NewTLS(t, redirect) // signs with RS256; discovery lists RS256
	self := oidctest.NewClientCert(t, "moat-fapi2", nil, false)
	p.UseSelfSignedClientCert(self.Leaf)
	p.Set(func(b *oidctest.Behavior) {
		b.PAR, b.AdvertiseIss = true, true
		b.MutateDiscovery = func(doc map[string]any) { doc["id_token_signing_alg_values_supported"] = []string{"RS256", "ES256"} }
	})
	c := newClient(t, p, func(cfg *oidc.Config) {
		cfg.AuthMethod, cfg.ClientSecret, cfg.Profile = oidc.MTLSSelfSigned, "", oidc.ProfileFAPI2
		cfg.HTTPClient = mtlsClient(p, &self)
	})
	const verifier = "verifier-verifier-verifier-verifier-verifier"
	q := fapi2Login(t, p, c, verifier)
	_, _, err := c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1"})
	if !errors.Is(err, oidc.ErrRejected) || !strings.Contains(err.Error(), "RS256") {
		t.Fatalf("exchange of an RS256 ID token under fapi2 = %v, want a rejection", err)
	}
}

// TestFAPI2DiscoveryRefusals: a discovery document that cannot meet FAPI
// 2.0 is reported by Mismatches (moat check, /readyz), naming oidc.profile
// or oidc.par, and every login is refused before the browser leaves.
func TestFAPI2DiscoveryRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"no PAR endpoint", func(d map[string]any) {
			delete(d, "pushed_authorization_request_endpoint")
			delete(d["mtls_endpoint_aliases"].(map[string]string), "pushed_authorization_request_endpoint")
		}, "oidc.par: required"},
		{"iss parameter not supported", func(d map[string]any) { d["authorization_response_iss_parameter_supported"] = false }, "authorization_response_iss_parameter_supported"},
		{"no PKCE S256", func(d map[string]any) { d["code_challenge_methods_supported"] = []string{"plain"} }, "lacks S256"},
		{"our auth method not listed", func(d map[string]any) {
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt", "tls_client_auth"}
		}, "lacks oidc.client_auth_method self_signed_tls_client_auth"},
		{"no auth methods listed", func(d map[string]any) { delete(d, "token_endpoint_auth_methods_supported") }, "token_endpoint_auth_methods_supported"},
		{"no certificate-bound tokens", func(d map[string]any) { delete(d, "tls_client_certificate_bound_access_tokens") }, "tls_client_certificate_bound_access_tokens"},
		{"RS256 ID tokens only", func(d map[string]any) { d["id_token_signing_alg_values_supported"] = []string{"RS256"} }, "id_token_signing_alg_values_supported"},
		{"ID token algs not stated (RS256)", func(d map[string]any) { delete(d, "id_token_signing_alg_values_supported") }, "id_token_signing_alg_values_supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, client := fapi2Provider(t)
			c := client(tc.mutate)
			md, err := c.Discover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			m := strings.Join(c.Mismatches(md), "\n")
			if !strings.Contains(m, tc.want) || (!strings.Contains(m, "oidc.profile: fapi2") && !strings.Contains(m, "oidc.par")) {
				t.Fatalf("mismatches = %q, want %q", m, tc.want)
			}
			if _, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "s", Nonce: "n", Verifier: "verifier-verifier-verifier-verifier-verifier"}); !errors.Is(err, oidc.ErrRejected) {
				t.Fatalf("login against it = %v, want a refusal", err)
			}
			for _, r := range p.Requests() {
				if strings.HasSuffix(r.Path, "/par") {
					t.Fatalf("the authorization request was pushed anyway")
				}
			}
		})
	}
}

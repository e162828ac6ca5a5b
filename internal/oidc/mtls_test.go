package oidc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

func mtlsClient(p *oidctest.Provider, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: p.RootCAs()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// TestMTLSClientAuth: with tls_client_auth or self_signed_tls_client_auth
// (RFC 8705 §2) the code exchange, PAR, refresh and revocation go to the
// provider's mtls_endpoint_aliases with client_id and the TLS client
// certificate, and no secret; a certificate the provider does not know is
// refused there.
func TestMTLSClientAuth(t *testing.T) {
	ca := oidctest.NewClientCert(t, "moat test CA", nil, true)
	issued := oidctest.NewClientCert(t, "moat-client", &ca, false)
	self := oidctest.NewClientCert(t, "moat-self", nil, false)
	stranger := oidctest.NewClientCert(t, "moat-self", nil, false)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	for _, tc := range []struct {
		name   string
		method string
		cert   *tls.Certificate
		setup  func(p *oidctest.Provider)
		want   string // the provider's refusal; "" works
	}{
		{"self-signed", oidc.MTLSSelfSigned, &self, func(p *oidctest.Provider) { p.UseSelfSignedClientCert(self.Leaf) }, ""},
		{"PKI", oidc.MTLSClientAuth, &issued, func(p *oidctest.Provider) { p.UsePKIClientCert(roots, issued.Leaf.Subject.String()) }, ""},
		{"another self-signed certificate", oidc.MTLSSelfSigned, &stranger, func(p *oidctest.Provider) { p.UseSelfSignedClientCert(self.Leaf) }, "not the registered certificate"},
		{"a self-signed certificate for PKI", oidc.MTLSClientAuth, &self, func(p *oidctest.Provider) { p.UsePKIClientCert(roots, issued.Leaf.Subject.String()) }, "chain"},
		{"another subject", oidc.MTLSClientAuth, &issued, func(p *oidctest.Provider) { p.UsePKIClientCert(roots, "CN=someone else") }, "subject"},
		{"no certificate", oidc.MTLSSelfSigned, nil, func(p *oidctest.Provider) { p.UseSelfSignedClientCert(self.Leaf) }, "no client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.NewTLS(t, redirect)
			p.Set(func(b *oidctest.Behavior) { b.PAR = true })
			tc.setup(p)
			c := newClient(t, p, func(cfg *oidc.Config) {
				cfg.AuthMethod, cfg.ClientSecret = tc.method, ""
				cfg.HTTPClient = mtlsClient(p, tc.cert)
			})
			const verifier = "verifier-verifier-verifier-verifier-verifier"
			u, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier})
			if tc.want != "" {
				if err == nil || !strings.Contains(p.CertError(), tc.want) {
					t.Fatalf("PAR = %v, provider: %q; want a refusal for %q", err, p.CertError(), tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("PAR: %v (provider: %q)", err, p.CertError())
			}
			browser := mtlsClient(p, nil) // a browser trusting the provider, without a client certificate
			browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := browser.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			tok, id, err := c.Exchange(context.Background(), loc.Query().Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1"})
			if err != nil {
				t.Fatalf("login: %v (provider: %q)", err, p.CertError())
			}
			if _, _, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, nil); err != nil {
				t.Fatalf("refresh: %v (provider: %q)", err, p.CertError())
			}
			if err := c.Revoke(context.Background(), tok.RefreshToken, "refresh_token"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.UserInfo(context.Background(), tok.AccessToken, id.Subject, nil); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range p.Requests() {
				if r.Method != http.MethodPost && r.Path != "/userinfo" {
					continue
				}
				n++
				if !r.MTLS || (r.Method == http.MethodPost && r.ClientAuth != "tls_client_auth") || r.Form.Has("client_secret") {
					t.Errorf("%s %s: mtls alias %v, client auth %q", r.Method, r.Path, r.MTLS, r.ClientAuth)
				}
			}
			if n != 5 { // PAR, code, refresh, revoke, userinfo
				t.Errorf("%d IdP calls seen", n)
			}
		})
	}
}

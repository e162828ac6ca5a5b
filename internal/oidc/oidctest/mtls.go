package oidctest

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// NewTLS starts a provider like New but on https, asking every client for
// a certificate, with mtls_endpoint_aliases (RFC 8705 §5) for the token,
// PAR, revocation and UserInfo endpoints under /mtls/. Once
// UseSelfSignedClientCert or UsePKIClientCert is called, the client must
// authenticate with its certificate, and only at the aliases.
func NewTLS(t testing.TB, redirectURI string) *Provider {
	p := start(redirectURI, true)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *Provider) startTLS(mux *http.ServeMux) {
	p.tls = true
	mux.HandleFunc("POST /mtls/token", p.token)
	mux.HandleFunc("POST /mtls/par", p.par)
	mux.HandleFunc("POST /mtls/revoke", p.revoke)
	mux.HandleFunc("GET /mtls/userinfo", p.userinfo)
	p.srv = httptest.NewUnstartedServer(p.record(p.garbage(mux)))
	p.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	p.srv.StartTLS()
	p.Issuer = p.srv.URL
}

// CAFile writes the provider's TLS certificate as a PEM file in dir, for
// oidc.ca_file.
func (p *Provider) CAFile(t testing.TB) string {
	path := filepath.Join(t.TempDir(), "op-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientCert is how the client's certificate is checked (RFC 8705 §2).
type clientCert struct {
	selfSigned []byte         // self_signed_tls_client_auth: the registered certificate's SHA-256
	roots      *x509.CertPool // tls_client_auth: the trusted CAs
	subjectDN  string         // and the registered tls_client_auth_subject_dn
	err        string
}

// UseSelfSignedClientCert makes the provider authenticate the client only
// by a TLS client certificate equal to cert (self_signed_tls_client_auth,
// RFC 8705 §2.2), at the mtls aliases.
func (p *Provider) UseSelfSignedClientCert(cert *x509.Certificate) {
	sum := sha256.Sum256(cert.Raw)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mtls = &clientCert{selfSigned: sum[:]}
}

// UsePKIClientCert makes the provider authenticate the client only by a
// TLS client certificate issued by roots for subjectDN (tls_client_auth,
// RFC 8705 §2.1), at the mtls aliases.
func (p *Provider) UsePKIClientCert(roots *x509.CertPool, subjectDN string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mtls = &clientCert{roots: roots, subjectDN: subjectDN}
}

// CertError returns why the provider last refused a client certificate,
// or "".
func (p *Provider) CertError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mtls == nil {
		return ""
	}
	return p.mtls.err
}

func (p *Provider) certValid(r *http.Request, c *clientCert) bool {
	fail := func(why string) bool {
		p.mu.Lock()
		c.err = why
		p.mu.Unlock()
		return false
	}
	switch {
	case !strings.HasPrefix(r.URL.Path, "/mtls/"):
		return fail("not at an mtls_endpoint_aliases endpoint")
	case r.TLS == nil || len(r.TLS.PeerCertificates) == 0:
		return fail("no client certificate")
	case r.PostForm.Get("client_id") != p.ClientID:
		return fail("client_id") // RFC 8705 §2: required in the request
	}
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Has("client_secret") || r.PostForm.Has("client_assertion") {
		return fail("other client authentication sent too")
	}
	leaf := r.TLS.PeerCertificates[0]
	if c.selfSigned != nil {
		sum := sha256.Sum256(leaf.Raw)
		if subtle.ConstantTimeCompare(sum[:], c.selfSigned) != 1 {
			return fail("not the registered certificate")
		}
		return true
	}
	inter := x509.NewCertPool()
	for _, ic := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fail("chain: " + err.Error())
	}
	if leaf.Subject.String() != c.subjectDN {
		return fail("subject " + leaf.Subject.String())
	}
	return true
}

// RootCAs trusts the provider's TLS certificate.
func (p *Provider) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.srv.Certificate())
	return pool
}

// bindCert binds g's tokens to the client certificate of r when the client
// presented one: mTLS client authentication or not (RFC 8705 §3).
func (p *Provider) bindCert(r *http.Request, g *grant) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return
	}
	g.certThumb = CertThumbprint(r.TLS.PeerCertificates[0])
}

// CertThumbprint is a certificate's x5t#S256 (RFC 8705 §3.1).
func CertThumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return b64(sum[:])
}

// AccessTokenCertBinding returns the x5t#S256 an access token is bound to
// (its cnf claim, RFC 8705 §3.1), or "" for an unbound or unknown token.
func (p *Provider) AccessTokenCertBinding(at string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accessCert[at]
}

package oidc

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrIssuerMismatch: the discovery document names another issuer than
// oidc.issuer. OIDC Discovery 1.0 §4.3 requires them to be identical, and
// every ID token's iss is compared with it, so moat cannot use the IdP.
// Errors wrapping it also wrap ErrUnavailable (logins answer 503).
var ErrIssuerMismatch = errors.New("oidc: oidc.issuer does not match the discovery document")

type issuerMismatch struct{ configured, discovered string }

func (e *issuerMismatch) Error() string {
	if sameIssuerSpelledDifferently(e.configured, e.discovered) {
		return fmt.Sprintf("the IdP's discovery document names its issuer %q, not %q: set oidc.issuer to exactly %q",
			e.discovered, e.configured, e.discovered)
	}
	return fmt.Sprintf("the discovery document at %q names another issuer, %q; they must be identical (OpenID Connect Discovery §4.3): "+
		"check oidc.issuer (to use that issuer, set oidc.issuer to exactly %q)", e.configured, e.discovered, e.discovered)
}

func (e *issuerMismatch) Unwrap() []error { return []error{ErrIssuerMismatch, ErrUnavailable} }

// sameIssuerSpelledDifferently reports whether a and b differ only by a
// trailing slash, the case of scheme or host, or an explicit default port.
func sameIssuerSpelledDifferently(a, b string) bool {
	norm := func(s string) (string, bool) {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", false
		}
		scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		host = strings.TrimSuffix(host, map[string]string{"https": ":443", "http": ":80"}[scheme])
		return scheme + "://" + host + strings.TrimRight(u.EscapedPath(), "/") + "?" + u.RawQuery, true
	}
	na, okA := norm(a)
	nb, okB := norm(b)
	return okA && okB && na == nb
}

package config

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// ForwardAuth configures the forward-auth listener: a gateway (nginx
// auth_request, Traefik forwardAuth, Caddy forward_auth, Envoy ext_authz)
// asks it whether an API call may pass and gets the access token to put on
// the upstream request. It is off unless Listen is set, and it is never
// served on the browser listener, because its answers carry access tokens.
type ForwardAuth struct {
	Listen string `yaml:"listen"`
	// TrustedProxies lists the gateways (IPs or CIDRs) allowed to ask;
	// anyone else gets 403. Their X-Forwarded-For, X-Original-* and
	// X-Forwarded-Method/-Uri headers are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// IdentityHeaders maps a response header to what it carries: sub, iss,
	// sid, or a string claim of the ID token (email, name, ...). The
	// gateway copies them onto the upstream request.
	IdentityHeaders map[string]string `yaml:"identity_headers"`
}

// ForwardAuthPrefix is the path under which the forward-auth listener
// answers; the browser listener answers 404 there.
const ForwardAuthPrefix = "/_moat/"

// reservedHeaders are never identity headers: the gateway copies identity
// headers onto the upstream request, where these have other meanings.
var reservedHeaders = []string{"Authorization", "Cookie", "Host", "Content-Length", "Content-Type",
	"Transfer-Encoding", "Connection", "Set-Cookie", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Moat-Error", "Cache-Control", "Retry-After", "Location", "X-Request-Id", "X-Csrf", "Origin"}

func (c *Config) validateForwardAuth(add func(key, format string, args ...any)) {
	f := c.ForwardAuth
	if f.Listen == "" {
		if len(f.TrustedProxies) > 0 || len(f.IdentityHeaders) > 0 {
			add("forward_auth.listen", "is empty, so forward-auth is off and its other keys do nothing; set it (e.g. 127.0.0.1:4003) or remove forward_auth")
		}
		return
	}
	if _, _, err := net.SplitHostPort(f.Listen); err != nil {
		add("forward_auth.listen", "%q is not host:port (e.g. 127.0.0.1:4003)", f.Listen)
	}
	if f.Listen == c.Listen {
		add("forward_auth.listen", "must differ from listen: forward-auth answers carry access tokens and must not be reachable from browsers")
	}
	if f.Listen == c.Admin.Listen {
		add("forward_auth.listen", "must differ from admin.listen")
	}
	if c.OIDC.DPoP {
		// RFC 9449 §7.1: a bound token goes with a proof for the exact
		// URL it is sent to, signed per request, and its nonce challenges
		// come back to the sender; the gateway sends, moat would not see.
		add("forward_auth.listen", "cannot be used with oidc.dpop: the sessions' tokens are DPoP-bound, so each upstream request needs a proof signed for its URL and the upstream's nonce challenges answered, which only moat's own proxy does; route these APIs through moat (routes[]) or remove oidc.dpop")
	}
	if len(f.TrustedProxies) == 0 {
		add("forward_auth.trusted_proxies", "is required: list the gateways' IPs or CIDRs (e.g. 127.0.0.1 or 10.0.0.0/8); nobody else may ask for tokens")
	}
	for i, p := range f.TrustedProxies {
		key := fmt.Sprintf("forward_auth.trusted_proxies[%d]", i)
		switch pfx, err := ParsePrefix(p); {
		case err != nil:
			add(key, "%q is not an IP or CIDR like 10.0.0.0/8", p)
		case pfx.Bits() == 0:
			// The peer check is what keeps access tokens off browsers:
			// trusting every address would hand one to anybody who can
			// reach the listener with a session cookie.
			add(key, "%q trusts every address, so anybody who can reach forward_auth.listen with a session cookie would get its access token; list the gateways' IPs or CIDRs", p)
		}
	}
	for h, v := range f.IdentityHeaders {
		key := "forward_auth.identity_headers." + h
		if !validHeaderName(h) {
			add(key, "%q is not a header name (letters, digits and '-')", h)
			continue
		}
		for _, r := range reservedHeaders {
			if strings.EqualFold(h, r) {
				add(key, "%s cannot be an identity header; pick another name such as X-Moat-Subject", http.CanonicalHeaderKey(h))
			}
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n") {
			add(key, "%q must name what the header carries: sub, iss, sid or a claim such as email", v)
		}
	}
}

func validHeaderName(h string) bool {
	if h == "" || len(h) > 64 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

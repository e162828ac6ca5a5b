// Package csrf defends moat's cookie-authenticated endpoints against
// cross-site request forgery (draft-ietf-oauth-browser-based-apps §6.1.3.3)
// and answers CORS for an allow-list of origins, never "*", never by
// reflection.
package csrf

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// HeaderName and HeaderValue form the custom request header that only
// same-origin script, or script on an allow-listed origin after a CORS
// preflight, can send (BBA §6.1.3.3.2).
const (
	HeaderName  = "X-CSRF"
	HeaderValue = "1"
)

// Modes.
const (
	ModeHeader        = "header"
	ModeFetchMetadata = "fetch-metadata"
)

// Errors returned by Check; all are a 403.
var (
	ErrMissingHeader = errors.New("csrf: missing X-CSRF: 1 header")
	ErrCrossOrigin   = errors.New("csrf: cross-origin request from an origin that is not allowed")
)

// Policy decides whether a request may act with the user's session.
type Policy struct {
	mode    string
	self    string   // moat's own origin
	allowed []string // cors.allowed_origins
	cop     *http.CrossOriginProtection
}

// New returns a Policy for mode, moat's public origin and the allowed
// cross-origin SPAs.
func New(mode, selfOrigin string, allowed []string) (*Policy, error) {
	cop := http.NewCrossOriginProtection()
	for _, o := range allowed {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, err
		}
	}
	return &Policy{mode: mode, self: selfOrigin, allowed: slices.Clone(allowed), cop: cop}, nil
}

// Check returns nil if r may proceed. Unsafe methods are always checked;
// safe ones only when always is set (proxied and local API routes, where a
// GET reaches the user's data).
func (p *Policy) Check(r *http.Request, always bool) error {
	if !always && isSafe(r.Method) {
		return nil
	}
	if p.mode == ModeHeader {
		if r.Header.Get(HeaderName) != HeaderValue {
			return ErrMissingHeader
		}
		// Defence in depth: Fetch-Metadata and Origin (net/http's
		// CrossOriginProtection) for unsafe methods, and a foreign Origin
		// never passes even on GET.
		if err := p.cop.Check(r); err != nil {
			return ErrCrossOrigin
		}
		if o := r.Header.Get("Origin"); o != "" && !p.trusted(o) {
			return ErrCrossOrigin
		}
		return nil
	}
	return p.checkFetchMetadata(r)
}

// checkFetchMetadata is the header-less mode: Sec-Fetch-Site decides when
// the browser sends it (all current ones do); otherwise Origin, else
// Referer. A request with none of them is not from a browser, and a
// non-browser cannot be forged into sending someone's cookie.
func (p *Policy) checkFetchMetadata(r *http.Request) error {
	origin := r.Header.Get("Origin")
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return nil
	case "same-site", "cross-site":
		if origin != "" && origin != "null" && p.allowedOrigin(origin) {
			return nil
		}
		return ErrCrossOrigin
	case "":
	default:
		return ErrCrossOrigin
	}
	if origin == "" {
		if ref := r.Header.Get("Referer"); ref != "" {
			u, err := url.Parse(ref)
			if err != nil || u.Host == "" {
				return ErrCrossOrigin
			}
			origin = u.Scheme + "://" + u.Host
		}
	}
	if origin == "" || p.trusted(origin) {
		return nil
	}
	return ErrCrossOrigin
}

// CheckOrigin requires an Origin header naming moat's own origin or an
// allowed one: the defence for WebSocket handshakes, which carry the
// session cookie but can carry no custom header (RFC 6455 §10.2).
func (p *Policy) CheckOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && p.trusted(o) {
		return nil
	}
	return ErrCrossOrigin
}

func (p *Policy) trusted(origin string) bool {
	return origin == p.self || p.allowedOrigin(origin)
}

func (p *Policy) allowedOrigin(origin string) bool {
	return slices.Contains(p.allowed, origin)
}

func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// CORS answers cross-origin requests from allow-listed origins with
// credentials. Preflights are answered here and never reach an upstream.
type CORS struct {
	allowed      []string
	allowHeaders string
	allowMethods string
}

// NewCORS returns a CORS handler for the allowed origins.
func NewCORS(allowed []string) *CORS {
	return &CORS{
		allowed:      slices.Clone(allowed),
		allowHeaders: strings.Join([]string{HeaderName, "Content-Type", "Accept", "X-Request-Id"}, ", "),
		allowMethods: "GET, HEAD, POST, PUT, PATCH, DELETE",
	}
}

// Wrap adds CORS handling in front of next.
func (c *CORS) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := slices.Contains(c.allowed, origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !allowed {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", c.allowMethods)
			h.Set("Access-Control-Allow-Headers", c.allowHeaders)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			// Retry-After is not CORS-safelisted: without this a cross-origin
			// SPA cannot read how long to wait after a 429 or 503.
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
		}
		next.ServeHTTP(w, r)
	})
}

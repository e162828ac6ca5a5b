// Package forwardauth lets a gateway that proxies API calls itself (nginx
// auth_request, ingress-nginx auth-url, Traefik forwardAuth, Caddy
// forward_auth, Envoy ext_authz) use moat as its session and token
// authority. The gateway sends a subrequest describing the original call;
// this package rebuilds that call from the subrequest's headers, believing
// them only from forward_auth.trusted_proxies, and hands it to moat's
// authorization step (server.Server.Authorizer), the one a call proxied by
// moat itself passes. A grant is a 200 carrying Authorization: Bearer and
// the configured identity headers, for the gateway to put on the upstream
// request; a refusal is moat's JSON 4xx/5xx, never a redirect.
package forwardauth

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/server"
)

// Paths on the forward-auth listener.
const (
	// CheckPath takes the original call from headers: X-Original-URI or
	// X-Original-URL with X-Original-Method (nginx, ingress-nginx), or
	// X-Forwarded-Uri with X-Forwarded-Method (Traefik, Caddy).
	CheckPath = config.ForwardAuthPrefix + "forward-auth"
	// ExtAuthzPrefix takes the original call from the request itself, as
	// Envoy's ext_authz HTTP service sends it: the original method, and
	// the original path behind this prefix (http_service.path_prefix).
	ExtAuthzPrefix = config.ForwardAuthPrefix + "ext-authz"
)

// maxURI bounds the original request target.
const maxURI = 8 << 10

// Handler is the forward-auth listener's http.Handler.
type Handler struct {
	trusted  []netip.Prefix
	identity []identityHeader
	next     http.Handler
	log      *slog.Logger

	// Refusals are logged at most once per warnEvery each: untrusted peers
	// (anyone who reaches the listener) and malformed checks (any browser,
	// through the gateway) can send them in floods.
	untrusted, malformed throttled
}

// warnEvery is how often a flood of one kind of refusal is logged.
const warnEvery = 10 * time.Second

// throttled is a warning logged at most once per warnEvery, with the
// number of occurrences since the last line.
type throttled struct {
	last atomic.Int64 // unix nanoseconds of the last line
	seen atomic.Int64 // occurrences since then
}

func (t *throttled) warn(log *slog.Logger, msg string, args ...any) {
	n := t.seen.Add(1)
	now := time.Now().UnixNano()
	last := t.last.Load()
	if now-last < int64(warnEvery) || !t.last.CompareAndSwap(last, now) {
		return
	}
	t.seen.Add(-n)
	log.Warn(msg, append(args, "refused_since_last_warning", n)...)
}

type identityHeader struct {
	name  string // canonical
	claim string
}

// New returns the handler for cfg (validated). Before it serves, SetNext
// must give it the handler that judges rebuilt requests: the gateway
// sets the current server's Authorizer(h.Allow), so reloaded routes and
// policies apply at once.
func New(cfg config.ForwardAuth, log *slog.Logger) *Handler {
	h := &Handler{log: log}
	for _, p := range cfg.TrustedProxies {
		pfx, _ := config.ParsePrefix(p) // validated
		h.trusted = append(h.trusted, pfx)
	}
	for name, claim := range cfg.IdentityHeaders {
		h.identity = append(h.identity, identityHeader{http.CanonicalHeaderKey(name), claim})
	}
	return h
}

// SetNext sets the handler that judges rebuilt requests (see New).
func (h *Handler) SetNext(next http.Handler) { h.next = next }

func (h *Handler) isTrusted(ip netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ServeHTTP rebuilds the original call and passes it on, or refuses.
func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &answer{ResponseWriter: rw}
	defer w.finish()
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !h.isTrusted(peer.Addr().Unmap()) {
		// Its answers carry access tokens: only the gateways may ask.
		h.untrusted.warn(h.log, "forward-auth request from a peer not in forward_auth.trusted_proxies", "peer", r.RemoteAddr)
		httperr.Write(w, httperr.New(http.StatusForbidden, "untrusted_peer", "forward-auth is only answered to the configured gateways", nil))
		return
	}
	orig, err := Rebuild(r, h.isTrusted)
	if err != nil {
		var e *httperr.Error
		if errors.As(err, &e) && e.Status == http.StatusBadRequest {
			h.malformed.warn(h.log, "forward-auth request refused", "peer", r.RemoteAddr, "error", err)
		}
		httperr.Write(w, err)
		return
	}
	h.next.ServeHTTP(w, orig)
}

// Allow writes a grant: 200 with the access token and the identity
// headers. The gateway copies them onto the upstream request, never onto
// the response to the browser. Each is present even when it has no value
// (a route without token, a claim the user lacks): empty, it tells the
// gateway to remove whatever the browser sent under that name, where a
// missing header would leave some gateways (Caddy 2.6) copying a
// placeholder or the browser's own value.
func (h *Handler) Allow(w http.ResponseWriter, r *http.Request, d server.Decision) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd["Authorization"] = []string{""}
	if d.AccessToken != "" {
		hd["Authorization"] = []string{"Bearer " + d.AccessToken}
	}
	var claims map[string]any
	for _, ih := range h.identity {
		var v string
		switch {
		case d.Session == nil:
		case ih.claim == "sub":
			v = d.Session.Subject
		case ih.claim == "iss":
			v = d.Session.Issuer
		case ih.claim == "sid":
			v = d.Session.SID
		default:
			if claims == nil {
				// What the ID token said, decoded once per session as the
				// route rules read it; undecodable, it holds no claim.
				claims, _ = d.Session.ClaimsMap()
			}
			v, _ = claims[ih.claim].(string)
		}
		if !headerSafe(v) {
			v = ""
		}
		hd[ih.name] = []string{v}
	}
	w.WriteHeader(http.StatusOK)
}

// ErrorHeader repeats a refusal's JSON body in a header, because nginx's
// auth_request drops the body of the answer it gets: its error_page
// location returns the header's value as the body (docs/gateways.md).
const ErrorHeader = "X-Moat-Error"

// answer holds a forward-auth answer until it is complete, so a refusal's
// body can also go in ErrorHeader. Answers are small and never stream.
type answer struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (a *answer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	return a.body.Write(b)
}

func (a *answer) finish() {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if v := strings.TrimSpace(a.body.String()); a.status != http.StatusOK && v != "" && headerSafe(v) {
		a.Header().Set(ErrorHeader, v)
	}
	a.ResponseWriter.WriteHeader(a.status)
	a.ResponseWriter.Write(a.body.Bytes())
}

// headerSafe reports whether v can be a header value as it is: visible
// ASCII and spaces, so no gateway has to encode or split it.
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return len(v) <= 1024
}

// The conventions' headers. From a trusted gateway they describe the
// original call; they never reach the authorization step themselves.
var (
	uriHeaders    = []string{"X-Original-Uri", "X-Original-Url", "X-Forwarded-Uri"}
	methodHeaders = []string{"X-Original-Method", "X-Forwarded-Method"}
	dropHeaders   = []string{
		"X-Original-Uri", "X-Original-Url", "X-Original-Method", "X-Forwarded-Uri", "X-Forwarded-Method",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"X-Forwarded-Server", "Forwarded", "X-Real-Ip", "X-Sent-From", "X-Auth-Request-Redirect",
		"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length", "Expect",
	}
)

func badRequest(msg string) error {
	return httperr.New(http.StatusBadRequest, "bad_forward_auth_request", msg, nil)
}

// Rebuild returns the original call that r, a subrequest from a trusted
// gateway, describes: its method and target, its headers (cookie, Origin,
// Sec-Fetch-*, X-CSRF...) and its client's address. Whatever is ambiguous
// is refused rather than guessed: the conventions' headers disagreeing or
// repeated, a target that is not an origin-form path, or a path that is
// not canonical (dot segments, empty segments, encoded slashes), which
// the gateway might route differently from moat.
func Rebuild(r *http.Request, trusted func(netip.Addr) bool) (*http.Request, error) {
	var method, target string
	switch {
	case r.URL.Path == CheckPath:
		m, err := agree(r.Header, methodHeaders, "method")
		if err != nil {
			return nil, err
		}
		if m == "" {
			return nil, badRequest("no original method: send X-Original-Method or X-Forwarded-Method")
		}
		t, err := agree(r.Header, uriHeaders, "target")
		if err != nil {
			return nil, err
		}
		if t == "" {
			return nil, badRequest("no original target: send X-Original-URI, X-Original-URL or X-Forwarded-Uri")
		}
		method, target = m, t
	case strings.HasPrefix(r.URL.Path, ExtAuthzPrefix+"/"):
		method = r.Method
		target = strings.TrimPrefix(r.RequestURI, ExtAuthzPrefix)
		if !strings.HasPrefix(r.RequestURI, ExtAuthzPrefix+"/") {
			return nil, badRequest("the target must be origin-form under " + ExtAuthzPrefix)
		}
		// Headers of the other conventions, if a client slipped them
		// through, must say the same.
		if m, err := agree(r.Header, methodHeaders, "method"); err != nil || (m != "" && m != method) {
			return nil, badRequest("the original method is stated twice, differently")
		}
		if t, err := agree(r.Header, uriHeaders, "target"); err != nil || (t != "" && t != target) {
			return nil, badRequest("the original target is stated twice, differently")
		}
	default:
		return nil, httperr.New(http.StatusNotFound, "not_found", "forward-auth answers at "+CheckPath+" and under "+ExtAuthzPrefix+"/", nil)
	}
	if !validMethod(method) {
		return nil, badRequest("the original method is not a method")
	}
	u, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	host := r.Host
	if hs := r.Header.Values("X-Forwarded-Host"); len(hs) == 1 && hs[0] != "" && !strings.ContainsAny(hs[0], ", /\\") {
		host = hs[0]
	}
	hd := r.Header.Clone()
	for _, k := range dropHeaders {
		delete(hd, k)
	}
	orig := &http.Request{
		Method: method, URL: u, RequestURI: u.RequestURI(),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hd, Host: host, Body: http.NoBody,
		RemoteAddr: net.JoinHostPort(ClientIP(r, trusted).String(), "0"),
	}
	return orig.WithContext(r.Context()), nil
}

// agree returns the one value the headers among names state, "" if none
// is present; a header given twice, or two that differ, is an error. An
// absolute X-Original-URL counts as its origin-form target.
func agree(h http.Header, names []string, what string) (string, error) {
	val := ""
	for _, n := range names {
		vs := h[n]
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			return "", badRequest(n + " is repeated")
		}
		v := vs[0]
		if n == "X-Original-Url" {
			u, err := url.Parse(v)
			if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" || u.User != nil || u.Fragment != "" {
				return "", badRequest("X-Original-URL is not an absolute URL")
			}
			v = u.EscapedPath()
			if v == "" {
				v = "/"
			}
			if u.RawQuery != "" || u.ForceQuery {
				v += "?" + u.RawQuery
			}
		}
		if val != "" && v != val {
			return "", badRequest("the original " + what + " is stated twice, differently")
		}
		val = v
	}
	return val, nil
}

// validMethod: an RFC 9110 §9.1 token, upper case as browsers send it.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseTarget accepts an origin-form target (RFC 9112 §3.2.1) whose path
// is canonical both as sent and decoded.
func parseTarget(t string) (*url.URL, error) {
	if len(t) > maxURI {
		return nil, badRequest("the original target is too long")
	}
	if !strings.HasPrefix(t, "/") || strings.HasPrefix(t, "//") {
		return nil, badRequest("the original target must be a path starting with a single /")
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= 0x20 || c >= 0x7f || c == '\\' || c == '#' {
			return nil, badRequest("the original target has a character no browser sends unescaped")
		}
	}
	u, err := url.ParseRequestURI(t)
	if err != nil {
		return nil, badRequest("the original target is not a valid request target")
	}
	raw, _, _ := strings.Cut(t, "?")
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00") {
		return nil, badRequest("the original path has an encoded slash, backslash or NUL")
	}
	if !canonical(raw) || !canonical(u.Path) {
		return nil, badRequest("the original path is not canonical (dot or empty segments)")
	}
	return u, nil
}

// canonical reports whether p has no empty, "." or ".." segment (a final
// empty segment, the trailing slash, is fine).
func canonical(p string) bool {
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == "." || s == ".." || strings.EqualFold(s, "%2e") || strings.EqualFold(s, "%2e%2e") ||
			strings.EqualFold(s, ".%2e") || strings.EqualFold(s, "%2e.") {
			return false
		}
		if s == "" && i != len(segs)-1 {
			return false
		}
	}
	return true
}

// ClientIP is the browser's address: the peer, or, as the peer is a
// trusted gateway, the right-most X-Forwarded-For entry that is not itself
// a trusted gateway (with or without a port, as server.ParseHop reads it).
// Entries a client wrote itself sit further left and are never reached.
func ClientIP(r *http.Request, trusted func(netip.Addr) bool) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	ip := ap.Addr().Unmap()
	if !trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := server.ParseHop(strings.TrimSpace(hops[i]))
		if !ok {
			break // a garbled chain: trust nothing beyond the last good hop
		}
		ip = hop
		if !trusted(ip) {
			break
		}
	}
	return ip
}

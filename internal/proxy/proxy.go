// Package proxy forwards browser API calls to a fixed allow-list of
// upstreams (draft-ietf-oauth-browser-based-apps §6.1.3.6): each route maps
// a path prefix on moat to one upstream URL prefix, and nothing in the
// request (path tricks, Host, forwarding headers) can change where it goes.
// It strips what the browser sent to authenticate to moat and adds the
// access token (RFC 6750 §2.1).
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/policy"
	"golang.org/x/text/unicode/norm"
)

// nfkc is Unicode Normalization Form KC (UAX #15), which some servers apply
// to paths before routing or file lookup.
var nfkc = norm.NFKC

// Route is one prefix → upstream mapping.
type Route struct {
	// Name labels the route in logs and metrics; the prefix by default.
	Name string
	// Prefix starts and ends with "/"; Upstream's path ends with "/".
	Prefix   string
	Upstream *url.URL
	// Token: the request must carry an access token in its context
	// (WithToken); without one the route answers 401.
	Token bool
	// TokenType is routes[].token: which token the caller puts in the
	// context (user, none, client, user_or_client, optional_user).
	TokenType string
	// Resource, when set, is the RFC 8707 resource the route's token is
	// restricted to.
	Resource string
	// ClientScopes are the scopes of the client-credentials token.
	ClientScopes []string
	// Exchange, when set, is the target the user's token is exchanged for
	// (RFC 8693, routes[].token_exchange).
	Exchange *Exchange
	// Timeout bounds the wait for the upstream's response headers.
	Timeout time.Duration
	// TLS configures the connection to an https upstream; nil uses the
	// system roots.
	TLS *tls.Config
	// Methods the route forwards; others get 405 (BBA §6.1.3.6).
	Methods []string
	// MaxBodyBytes bounds the request body; 0 means no bound.
	MaxBodyBytes int64
	// AllowSetCookie passes upstream Set-Cookie headers, except any that
	// would set one of moat's own cookies.
	AllowSetCookie bool
	// WebSocket allows protocol upgrades (RFC 6455) on this route.
	WebSocket bool
	// AllowClearSiteData passes the upstream's Clear-Site-Data header,
	// which can delete moat's session cookie.
	AllowClearSiteData bool
	// ForwardHeaders are request headers forwarded besides
	// defaultForwardHeaders; names CheckForwardHeader refuses are ignored.
	ForwardHeaders []string
	// Require holds the route's rules on the user's claims; nil allows all.
	Require *policy.Policy
}

// Exchange is a route's RFC 8693 token-exchange target.
type Exchange struct {
	Audience, Resource string
	Scope              []string
}

// IsUpgrade reports whether r asks to switch protocols (a WebSocket
// handshake: Connection: upgrade and an Upgrade header).
func IsUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// ownCookie reports whether name is one of moat's cookies
// (__Host-Http-moat, __Host-moat-login), which no upstream may set.
func ownCookie(name string) bool {
	name = strings.ToLower(strings.TrimSpace(name))
	return strings.HasPrefix(name, "__host-http-moat") || strings.HasPrefix(name, "__host-moat")
}

// Table routes requests by longest prefix.
type Table struct {
	routes []*compiled // longest prefix first
}

type compiled struct {
	Route
	forward    map[string]bool // canonical names of the request headers forwarded
	handler    *httputil.ReverseProxy
	transport  *http.Transport
	onUpstream func(r *http.Request, route string, code int, d time.Duration)
}

// Options configures a Table.
type Options struct {
	Logger *slog.Logger
	// MaxIdleConnsPerHost sizes each upstream's keep-alive pool; without it
	// Go keeps 2, and a busy BFF opens and closes connections constantly.
	MaxIdleConnsPerHost int
	// WrapTransport, if set, wraps each upstream transport (tracing).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// OnUpstream, if set, observes each forwarded request: the upstream's
	// status (502/504 when it failed) and the time to the end of its body.
	OnUpstream func(r *http.Request, route string, code int, d time.Duration)
}

// New builds the table. Routes must be validated already (config.Validate).
func New(routes []Route, o Options) *Table {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 256
	}
	t := &Table{}
	pool := &BufferPool{}
	nonces := &dpop.Nonces{} // the upstreams' latest DPoP nonces, by origin
	for _, r := range routes {
		if r.Name == "" {
			r.Name = r.Prefix
		}
		c := &compiled{Route: r, onUpstream: o.OnUpstream, forward: forwardSet(r.ForwardHeaders)}
		c.transport = newTransport(r, o.MaxIdleConnsPerHost)
		var rt http.RoundTripper = c.transport
		if o.WrapTransport != nil {
			rt = o.WrapTransport(rt)
		}
		rt = &dpop.Transport{Base: rt, Sender: c.dpopSender, Nonces: nonces, MaxReplay: maxReplay}
		c.handler = &httputil.ReverseProxy{
			Rewrite:        c.rewrite,
			Transport:      rt,
			BufferPool:     pool,
			ModifyResponse: modifyResponse(r.AllowSetCookie, r.AllowClearSiteData),
			ErrorHandler:   errorHandler(o.Logger, r.Name),
			ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		}
		t.routes = append(t.routes, c)
	}
	sort.SliceStable(t.routes, func(i, j int) bool { return len(t.routes[i].Prefix) > len(t.routes[j].Prefix) })
	return t
}

// Match returns the route for path (a decoded URL path), or false.
func (t *Table) Match(path string) (*Route, http.Handler, bool) {
	for _, c := range t.routes {
		if strings.HasPrefix(path, c.Prefix) {
			return &c.Route, c, true
		}
	}
	return nil, nil, false
}

// Routes returns the routes, longest prefix first.
func (t *Table) Routes() []*Route {
	out := make([]*Route, len(t.routes))
	for i, c := range t.routes {
		out[i] = &c.Route
	}
	return out
}

// CloseIdleConnections closes every upstream's idle connections.
func (t *Table) CloseIdleConnections() {
	for _, c := range t.routes {
		c.transport.CloseIdleConnections()
	}
}

// WithToken returns a context carrying the access token to forward, and
// the DPoP key it is bound to (nil: a Bearer token). The route fills in
// the rest of the forward's state in the same context value, so that the
// token costs no request copy of its own.
func WithToken(ctx context.Context, accessToken string, key *dpop.Key) context.Context {
	return context.WithValue(ctx, stateKey{}, &State{token: accessToken, key: key})
}

// SetToken sets the access token to forward (and its DPoP key, nil for a
// Bearer token) on the unused State that ctx already holds, and reports
// whether it had one; if not, use WithToken.
func SetToken(ctx context.Context, accessToken string, key *dpop.Key) bool {
	st, ok := ctx.Value(stateKey{}).(*State)
	if !ok || st.started.Load() {
		return false
	}
	st.token, st.key = accessToken, key
	return true
}

// ServeHTTP forwards r to the route's upstream.
func (c *compiled) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.Allows(r.Method) {
		e := httperr.New(http.StatusMethodNotAllowed, "method_not_allowed", "this route does not accept "+r.Method, nil)
		e.Header = http.Header{"Allow": {strings.Join(c.Methods, ", ")}}
		httperr.Write(w, e)
		return
	}
	if IsUpgrade(r) {
		if !c.WebSocket || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			httperr.Write(w, httperr.New(http.StatusBadRequest, "upgrade_not_allowed", "this route does not accept protocol upgrades", nil))
			return
		}
		// The connection outlives the request: lift the server's read and
		// write deadlines before ReverseProxy hijacks it.
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Time{})
		rc.SetWriteDeadline(time.Time{})
	}
	if c.MaxBodyBytes > 0 {
		if r.ContentLength > c.MaxBodyBytes {
			httperr.Write(w, tooLarge(nil))
			return
		}
		if r.Body != http.NoBody { // nothing to bound on a bodiless GET
			r.Body = http.MaxBytesReader(w, r.Body, c.MaxBodyBytes)
		}
	}
	rest, err := Rest(r.URL, c.Prefix)
	if err != nil {
		httperr.Write(w, httperr.New(http.StatusBadRequest, "bad_path", "the request path is not allowed", err))
		return
	}
	fw, _ := r.Context().Value(stateKey{}).(*State)
	if c.Token && (fw == nil || fw.token == "") {
		httperr.Write(w, httperr.Unauthenticated(nil))
		return
	}
	if fw == nil || !fw.started.CompareAndSwap(false, true) {
		// No state yet (a route without a token), or the state belongs to
		// another forward made with the same context: start afresh.
		next := &State{}
		if fw != nil {
			next.token, next.key = fw.token, fw.key
		}
		next.started.Store(true)
		fw = next
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, fw))
	}
	// Whether the answer already says nosniff (moat's security headers):
	// modifyResponse then does not repeat it.
	v := w.Header()["X-Content-Type-Options"]
	fw.nosniff = len(v) > 0 && v[0] == "nosniff"
	fw.target = *c.Upstream
	fw.target.Path = c.Upstream.Path + rest
	fw.target.RawPath = ""
	fw.target.RawQuery = r.URL.RawQuery
	// Until the upstream's final answer, ReverseProxy touches w only to
	// relay interim (1xx) answers: fw.w drops them (interimWriter).
	fw.w = interimWriter{ResponseWriter: w}
	fw.w.roundTrip.Store(true)
	start := time.Now()
	c.handler.ServeHTTP(&fw.w, r)
	fw.w.roundTrip.Store(false)
	if c.onUpstream != nil && fw.code != 0 {
		c.onUpstream(r, c.Name, fw.code, time.Since(start))
	}
}

// State is one forwarded request's state, in a single context value (one
// allocation, no request copy beyond the one WithToken's caller makes): the
// access token, the upstream URL for rewrite, and the upstream's status,
// which ModifyResponse or the error handler set for ServeHTTP.
//
// The proxy finds it as the request context's Value for the key IsStateKey
// recognizes. A caller whose requests carry a context of their own anyway
// may hold a State in it and answer that key with it (and then SetToken):
// then the state costs no context and no request copy at all.
type State struct {
	token   string
	key     *dpop.Key   // the token's DPoP key; nil: a Bearer token
	started atomic.Bool // claimed by the ServeHTTP that uses it
	target  url.URL
	code    int
	nosniff bool // the response writer's headers say X-Content-Type-Options: nosniff already
	w       interimWriter
}

// interimWriter is the response writer ReverseProxy gets. While the round
// trip to the upstream runs, ReverseProxy writes to it only from its
// Got1xxResponse hook: it copies an interim answer's headers into the
// writer's header map, writes the 1xx status, then clears the map, which
// would send the upstream's headers unfiltered (Set-Cookie in a 103) and
// wipe moat's own (security headers, request ID, CORS, Connection: close)
// from the final answer. Here the hook gets a scratch map and the status
// is not written: interim answers never reach the browser (RFC 9110 §15.2
// lets a proxy drop them, except 101, which ends the round trip first).
type interimWriter struct {
	http.ResponseWriter
	roundTrip atomic.Bool // until ModifyResponse or the error handler
	scratch   http.Header // what the hook writes and clears
}

func (w *interimWriter) Header() http.Header {
	if w.roundTrip.Load() {
		if w.scratch == nil {
			w.scratch = http.Header{}
		}
		return w.scratch
	}
	return w.ResponseWriter.Header()
}

func (w *interimWriter) WriteHeader(code int) {
	if w.roundTrip.Load() {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the writer's Flush and Hijack.
func (w *interimWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type stateKey struct{}

// IsStateKey reports whether key is the context key under which the proxy
// looks up a request's *State (a function, so no caller can change the key).
func IsStateKey(key any) bool { _, ok := key.(stateKey); return ok }

// setOutcome records the upstream's status (or moat's answer instead) on
// r's state, and returns the state; nil outside a forward.
func setOutcome(r *http.Request, code int) *State {
	fw, _ := r.Context().Value(stateKey{}).(*State)
	if fw != nil {
		fw.code = code
		fw.w.roundTrip.Store(false) // the answer is final: writes go through
	}
	return fw
}

// Errors from Rest.
var (
	ErrTraversal    = errors.New("proxy: path contains a dot or empty segment")
	ErrEncodedSlash = errors.New("proxy: path contains an encoded slash, backslash or dot")
	ErrOutside      = errors.New("proxy: path is outside the route prefix")
	ErrNotUTF8      = errors.New("proxy: path is not valid UTF-8")
)

// looksLikeDots reports whether some server could read seg as a dot
// segment or as holding a slash: after removing whitespace, control and
// format characters anywhere in it (the WHATWG URL parser drops tabs and
// newlines, others trim; "..%20", "..%09") and after NFKC normalisation
// (Unicode-normalising servers read the fullwidth "．．" and "‥" as "..",
// and "／" as "/"), and with path parameters cut off.
func looksLikeDots(seg string) bool {
	ascii, odd := true, false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if c <= ' ' || c == 0x7f {
			odd = true
		}
	}
	if ascii && !odd {
		return false // the plain checks in Rest saw it as it is
	}
	n := strings.Map(dropInvisible, seg)
	if !ascii {
		n = strings.Map(dropInvisible, nfkc.String(n))
		if strings.ContainsAny(n, "/\\") {
			return true
		}
	}
	name, _, _ := strings.Cut(n, ";")
	return name == "." || name == ".."
}

// dropInvisible removes whitespace, control and format (Cf: zero-width
// space, soft hyphen, BOM) characters.
func dropInvisible(r rune) rune {
	if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
		return -1
	}
	return r
}

// Rest returns the part of u's path below prefix, refusing anything that
// could make the upstream resolve a path outside the route: dot segments
// (plain or encoded), empty segments, encoded or literal backslashes,
// encoded slashes, NUL,
// and double encodings of those (%252e), which a lenient upstream might
// decode twice.
func Rest(u *url.URL, prefix string) (string, error) {
	path := u.Path
	if strings.ContainsAny(path, "\\\x00") {
		return "", ErrEncodedSlash
	}
	if raw := u.EscapedPath(); strings.IndexByte(raw, '%') >= 0 { // every pattern below has one
		raw = strings.ToLower(raw)
		for _, bad := range []string{"%2f", "%5c", "%00", "%25"} {
			if strings.Contains(raw, bad) {
				return "", ErrEncodedSlash
			}
		}
	}
	if strings.Contains(path, "//") {
		return "", ErrTraversal // "//host" reads as an authority to some parsers
	}
	if !utf8.ValidString(path) {
		return "", ErrNotUTF8 // overlong forms of "." and "/" (%C0%AE) among them
	}
	for seg := range strings.SplitSeq(path, "/") {
		// Servlet containers read "..;x" as ".." (path parameters), so a
		// dot segment with parameters is still a dot segment.
		if name, _, _ := strings.Cut(seg, ";"); name == "." || name == ".." || looksLikeDots(seg) {
			return "", ErrTraversal
		}
	}
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return "", ErrOutside
	}
	return rest, nil
}

func (c *compiled) rewrite(pr *httputil.ProxyRequest) {
	fw := pr.In.Context().Value(stateKey{}).(*State)
	pr.Out.URL = &fw.target
	pr.Out.Host = "" // the upstream's own host, whatever Host the browser sent
	// An allow-list: keys of a parsed request are canonical, and a key
	// that is not (it held a character outside a token) is dropped too.
	for name := range pr.Out.Header {
		if !c.forward[name] {
			delete(pr.Out.Header, name)
		}
	}
	if fw.token != "" && c.TokenType != "none" && fw.key == nil {
		// Only the server puts a token in the state, after authorizing this
		// route: token: optional_user routes carry one when logged in. A
		// DPoP-bound token is never sent as Bearer: the transport sends it
		// with its proof (dpopSender).
		pr.Out.Header["Authorization"] = []string{"Bearer " + fw.token}
	}
}

// maxReplay is the largest request body held in memory so that a request
// with a DPoP-bound token can be sent again when its upstream asks for a
// new nonce (RFC 9449 §9); a larger one gets 503 dpop_nonce instead, and
// the browser's retry carries the nonce.
const maxReplay = 64 << 10

// dpopSender names the DPoP key and token of a forwarded request: those
// the server put in its state, when the token is bound to a key.
func (c *compiled) dpopSender(r *http.Request) (*dpop.Key, string) {
	if fw, ok := r.Context().Value(stateKey{}).(*State); ok && fw.key != nil && fw.token != "" && c.TokenType != "none" {
		return fw.key, fw.token
	}
	return nil, ""
}

// Allows reports whether the route forwards method.
func (r *Route) Allows(method string) bool {
	return len(r.Methods) == 0 || slices.Contains(r.Methods, method)
}

func tooLarge(err error) *httperr.Error {
	return httperr.New(http.StatusRequestEntityTooLarge, "too_large", "the request body is too large", err)
}

// modifyResponse keeps upstreams from speaking for moat: CORS is moat's
// alone, and an upstream never sets one of moat's cookies; other cookies
// pass only where the route allows them, as does Clear-Site-Data. Every answer says
// X-Content-Type-Options: nosniff first, and once if the upstream said so
// too.
func modifyResponse(allowSetCookie, allowClearSiteData bool) func(*http.Response) error {
	return func(resp *http.Response) error {
		fw := setOutcome(resp.Request, resp.StatusCode)
		h := resp.Header
		for name := range h {
			if strings.HasPrefix(name, "Access-Control-") {
				h.Del(name)
			}
		}
		// Header keys of a parsed response are canonical: index them
		// directly rather than through Get, Del and Set.
		delete(h, "Set-Cookie2")
		delete(h, "Dpop-Nonce") // moat's, for its next proof (RFC 9449 §9)
		if !allowClearSiteData {
			delete(h, "Clear-Site-Data") // it would delete moat's session cookie
		}
		if cookies := h["Set-Cookie"]; len(cookies) > 0 {
			delete(h, "Set-Cookie")
			if allowSetCookie {
				for _, c := range cookies {
					if name, _, _ := strings.Cut(c, "="); !ownCookie(name) {
						h["Set-Cookie"] = append(h["Set-Cookie"], c)
					}
				}
			}
		}
		if v := h["X-Content-Type-Options"]; len(v) == 0 || v[0] == "" || (len(v) == 1 && v[0] == "nosniff") {
			if fw != nil && fw.nosniff {
				// The answer says nosniff already, first: ReverseProxy
				// would add the upstream's (or this) as a second line.
				delete(h, "X-Content-Type-Options")
			} else if len(v) == 0 || v[0] == "" {
				h["X-Content-Type-Options"] = []string{"nosniff"}
			}
		}
		return nil
	}
}

func errorHandler(log *slog.Logger, route string) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			setOutcome(r, 499) // the browser went away
			return
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			setOutcome(r, http.StatusRequestEntityTooLarge)
			httperr.Write(w, tooLarge(err))
			return
		}
		if errors.Is(err, dpop.ErrNonceNotReplayed) {
			// The upstream wants a proof with its new nonce, which is now
			// remembered, and this body could not be sent twice: the
			// browser's retry goes through.
			setOutcome(r, http.StatusServiceUnavailable)
			e := httperr.New(http.StatusServiceUnavailable, "dpop_nonce", "the upstream API asked for a new DPoP nonce; retry the request", err)
			e.Header = http.Header{"Retry-After": {"0"}}
			httperr.Write(w, e)
			return
		}
		status, code, msg := http.StatusBadGateway, "bad_gateway", "the upstream API could not be reached"
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			status, code, msg = http.StatusGatewayTimeout, "upstream_timeout", "the upstream API did not answer in time"
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			msg = "the upstream API refused the connection"
		}
		log.Warn("upstream request failed", "route", route, "error", err)
		setOutcome(r, status)
		httperr.Write(w, httperr.New(status, code, msg, err))
	}
}

func newTransport(r Route, maxIdle int) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never through an environment proxy: the allow-list is the route table
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: r.Timeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       r.TLS,
	}
}

// BufferPool reuses 32 KiB copy buffers (httputil.BufferPool) for every
// route; the zero value is ready. It pools array pointers, so that Put does
// not allocate a slice header each time. bench/cmd/bareproxy uses it too,
// so that the reference proxy copies bodies as moat does.
type BufferPool struct{ p sync.Pool }

const bufferSize = 32 * 1024

// Get returns a buffer of 32 KiB.
func (b *BufferPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return v.(*[bufferSize]byte)[:]
	}
	return new([bufferSize]byte)[:]
}

// Put keeps buf for reuse if it can hold 32 KiB.
func (b *BufferPool) Put(buf []byte) {
	if cap(buf) >= bufferSize {
		b.p.Put((*[bufferSize]byte)(buf[:bufferSize]))
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/logbuf"
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/server"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

// env is a running moat with its fake OP and an upstream API, all on
// 127.0.0.1.
type env struct {
	t        testing.TB
	op       *oidctest.Provider
	upstream *upstream
	gw       *gateway.Gateway
	cfg      *config.Config
	url      string
	logs     *logtest.Buffer
	log      *slog.Logger
	srv      *http.Server
	clock    *clock
	opts     gateway.Options

	secretsMu sync.Mutex
	secrets   []string // session IDs handed out, for scanLogs
}

// slogHandler(true), a mod for newEnv, logs through slog's own JSON
// handler rather than logbuf's.
type slogHandler bool

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// newEnv starts moat; each mod is a func(*config.Config) applied to the
// configuration, a func(*oidctest.Behavior) or func(*oidctest.Provider)
// applied to the OP before moat first contacts it, a
// func(*gateway.Options), or slogHandler(true).
//
// moat logs JSON through logbuf's handler, as cmd/moat sets it up (its
// access log line takes the handler's fast path), unless slogHandler(true)
// asks for slog's own.
func newEnv(t testing.TB, mods ...any) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	e := &env{t: t, url: base, logs: &logtest.Buffer{}, clock: &clock{}}
	plain := false
	e.op = oidctest.New(t, base+"/auth/callback")
	e.upstream = newUpstream(t, e.op)
	e.cfg = &config.Config{
		Listen:    ln.Addr().String(),
		PublicURL: base,
		OIDC: config.OIDC{
			Issuer: e.op.Issuer, ClientID: e.op.ClientID, ClientSecret: secret.String(e.op.ClientSecret),
			Timeout: config.Duration(2 * time.Second),
		},
		Session: config.Session{Keys: []secret.String{secret.String(session.NewKey())}},
		Routes: []config.Route{
			{Prefix: "/resource/api/", Upstream: e.upstream.URL + "/api/"},
			{Prefix: "/resource/api/public/", Upstream: e.upstream.URL + "/public/", Token: config.TokenNone},
		},
		CORS: config.CORS{AllowedOrigins: []string{"http://localhost:5173"}},
		// Tests log in far more often than people; limits get their own test.
		Limits: config.Limits{
			PerIP: config.Limit{Rate: 1e4, Burst: 1e4}, PerSession: config.Limit{Rate: 1e4, Burst: 1e4},
			Login: config.Limit{Rate: 1e4, Burst: 1e4},
		},
	}
	for _, m := range mods {
		switch m := m.(type) {
		case func(*config.Config):
			m(e.cfg)
		case func(*oidctest.Behavior):
			e.op.Set(m)
		case func(*oidctest.Provider):
			m(e.op)
		case func(*gateway.Options):
			m(&e.opts)
		case slogHandler:
			plain = bool(m)
		default:
			t.Fatalf("newEnv: unknown mod %T", m)
		}
	}
	e.cfg.SetDefaults()
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logw io.Writer = e.logs
	if _, bench := t.(*testing.B); bench {
		logw = io.Discard // a benchmark's millions of access log lines are not what it measures
	}
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	var logbufw *logbuf.Writer
	if plain {
		e.log = slog.New(slog.NewJSONHandler(logw, opts))
	} else {
		logbufw = logbuf.New(logw, 1, time.Hour) // maxBytes 1: no batching, lines reach e.logs at once
		e.log = slog.New(logbuf.NewJSONHandler(logbufw, opts))
	}
	e.start(ln)
	t.Cleanup(func() {
		e.stop()
		if logbufw != nil {
			logbufw.Close()
		}
		e.scanLogs()
	})
	return e
}

// start runs a gateway on ln. The memory store gets the test clock; other
// stores are opened from the configuration.
func (e *env) start(ln net.Listener) {
	opts := e.opts // a test may bring its own Store
	opts.Now = e.clock.Now
	if opts.Store == nil && e.cfg.Session.Store == "memory" {
		opts.Store = memory.New(memory.Options{Now: e.clock.Now})
	}
	gw, err := gateway.New(context.Background(), e.cfg, e.log, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.gw = gw
	srv, err := gateway.NewHTTPServer(e.cfg, gw, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	if srv.TLSConfig != nil {
		go srv.ServeTLS(ln, "", "")
	} else {
		go srv.Serve(ln)
	}
}

func (e *env) stop() {
	e.srv.Close()
	e.gw.Close()
}

// restart stops moat and starts a new process-equivalent on the same
// address with the same configuration.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	ln, err := net.Listen("tcp", e.cfg.Listen)
	if err != nil {
		e.t.Fatal(err)
	}
	e.start(ln)
}

// noteSecret adds a value that must never reach a log: a session ID handed
// to a browser.
func (e *env) noteSecret(v string) {
	e.secretsMu.Lock()
	e.secrets = append(e.secrets, v)
	e.secretsMu.Unlock()
}

// scanLogs fails the test if any token, the client secret or a session ID
// reached a log.
func (e *env) scanLogs() {
	logs := e.logs.String()
	e.secretsMu.Lock()
	secrets := append(e.op.IssuedTokens(), e.op.ClientSecret)
	secrets = append(secrets, e.secrets...)
	e.secretsMu.Unlock()
	for _, tok := range secrets {
		if strings.Contains(logs, tok) {
			e.t.Errorf("a token, secret or session ID reached the log: %.8s...", tok)
		}
	}
}

// upstream is a resource API that records what reaches it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t testing.TB, op *oidctest.Provider) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Set-Cookie", session.CookieName+"=planted; Path=/")
		w.Header().Set("Content-Type", "application/json")
		sub := ""
		if at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			var valid bool
			if sub, valid = op.ValidAccessToken(at); !valid {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error":"invalid_token"}`)
				return
			}
		}
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.EscapedPath(), "query": r.URL.RawQuery, "sub": sub})
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// browser is a minimal user agent: it keeps cookies (including Secure ones
// over loopback http, as browsers do), never follows redirects by itself,
// and records every byte it receives for leak scans.
type browser struct {
	t       testing.TB
	e       *env
	mu      sync.Mutex
	cookies map[string]*http.Cookie
	headers bytes.Buffer // every response header the browser saw
	bodies  bytes.Buffer // every response body
}

func (e *env) browser() *browser {
	return &browser{t: e.t, e: e, cookies: map[string]*http.Cookie{}}
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

type response struct {
	*http.Response
	body []byte
}

func (r *response) json(t testing.TB) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", r.Request.URL, r.body, err)
	}
	return m
}

// do sends req with the browser's cookies for moat's origin.
func (b *browser) do(req *http.Request) *response {
	b.t.Helper()
	if strings.HasPrefix(req.URL.String(), b.e.url) {
		b.mu.Lock()
		for _, c := range b.cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		b.mu.Unlock()
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	resp.Header.Write(&b.headers)
	b.bodies.Write(body)
	if strings.HasPrefix(req.URL.String(), b.e.url) {
		for _, c := range resp.Cookies() {
			if c.Name == session.CookieName && c.Value != "" {
				b.e.noteSecret(c.Value)
			}
			if c.MaxAge < 0 {
				delete(b.cookies, c.Name)
			} else {
				b.cookies[c.Name] = c
			}
		}
	}
	return &response{resp, body}
}

func (b *browser) get(path string, headers ...string) *response {
	b.t.Helper()
	return b.send(http.MethodGet, path, nil, headers...)
}

func (b *browser) send(method, path string, body io.Reader, headers ...string) *response {
	b.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.e.url + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

// api calls a proxied or local API the way the SPA does.
func (b *browser) api(method, path string) *response {
	b.t.Helper()
	return b.send(method, path, nil, csrf.HeaderName, csrf.HeaderValue)
}

// login walks the whole front channel and returns the final redirect.
func (b *browser) login(returnTo string) *response {
	b.t.Helper()
	r := b.get("/auth/login?returnTo=" + url.QueryEscape(returnTo))
	if r.StatusCode != http.StatusFound {
		b.t.Fatalf("login: %s %s", r.Status, r.body)
	}
	r = b.get(r.Header.Get("Location")) // the OP auto-approves
	if r.StatusCode != http.StatusFound {
		b.t.Fatalf("authorize: %s %s", r.Status, r.body)
	}
	return b.get(r.Header.Get("Location")) // back to /auth/callback
}

// finishLoginTLS takes r, moat's redirect to the authorization endpoint of
// op (an https OP trusted through its own CA), through op and back to
// /auth/callback, as a browser would, and returns moat's answer.
func (b *browser) finishLoginTLS(op *oidctest.Provider, r *response) *response {
	b.t.Helper()
	ua := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: op.RootCAs()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer ua.CloseIdleConnections()
	resp, err := ua.Get(r.Header.Get("Location"))
	if err != nil {
		b.t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("authorize: %s (provider: %q %q)", resp.Status, op.CertError(), op.AssertionError())
	}
	return b.get(resp.Header.Get("Location"))
}

func (b *browser) sessionCookie() *http.Cookie {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cookies[session.CookieName]
}

func (b *browser) setCookie(c *http.Cookie) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cookies[c.Name] = c
}

// expireAccessToken makes the session's access token due for refresh, as
// if its lifetime had passed, without waiting.
func (e *env) expireAccessToken(c *http.Cookie) {
	e.t.Helper()
	id, err := session.ParseID(c.Value)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := context.Background()
	l, err := e.gw.Sessions.LoadKey(ctx, id.Key())
	if err != nil {
		e.t.Fatal(err)
	}
	l.Tokens.Expiry = e.clock.Now().Add(-time.Second)
	if err := e.gw.Sessions.Save(ctx, l); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) accessToken(c *http.Cookie) string {
	e.t.Helper()
	id, _ := session.ParseID(c.Value)
	l, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Tokens.AccessToken
}

func userFrom(r *http.Request) (string, bool) {
	id, ok := server.UserFrom(r.Context())
	if !ok {
		return "", false
	}
	return id.Subject, true
}

// eventually polls cond until it holds, failing after 5 s. It is for work
// moat does in the background (revocation), not for timing.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// adminReadyz answers /readyz as the admin listener does, with every
// check; the public listener's says only {"ready": …}.
func adminReadyz(t testing.TB, gw http.Handler) (int, map[string]string) {
	t.Helper()
	w := httptest.NewRecorder()
	server.Detailed(gw).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body struct{ Checks map[string]string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Checks == nil {
		t.Fatalf("admin /readyz: %d %s", w.Code, w.Body)
	}
	return w.Code, body.Checks
}

package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// faEnv is moat with forward-auth on, served on a listener of its own.
type faEnv struct {
	*env
	fa *httptest.Server
}

func newFAEnv(t *testing.T, mods ...any) *faEnv {
	t.Helper()
	mods = append([]any{func(c *config.Config) {
		c.ForwardAuth = config.ForwardAuth{Listen: "127.0.0.1:0", TrustedProxies: []string{"127.0.0.1"},
			IdentityHeaders: map[string]string{"X-Moat-Subject": "sub", "X-Moat-Email": "email"}}
		c.Routes = append(c.Routes, config.Route{Prefix: "/resource/read/", Upstream: "http://127.0.0.1:1/read/", Methods: []string{"GET"}})
	}}, mods...)
	e := newEnv(t, mods...)
	if e.gw.ForwardAuth == nil {
		t.Fatal("forward_auth.listen set, but the gateway has no forward-auth handler")
	}
	fa := httptest.NewServer(e.gw.ForwardAuth)
	t.Cleanup(fa.Close)
	return &faEnv{e, fa}
}

// check asks forward-auth about method target, as nginx's auth_request
// does, with the browser's cookies and the extra headers.
func (f *faEnv) check(b *browser, method, target string, headers ...string) *response {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.fa.URL+"/_moat/forward-auth", nil)
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URI", target)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return f.send(b, req)
}

func (f *faEnv) send(b *browser, req *http.Request) *response {
	f.t.Helper()
	if b != nil {
		if c := b.sessionCookie(); c != nil {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return &response{resp, body}
}

func bearer(r *response) string {
	at, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return at
}

func TestForwardAuthGrantsWhatTheProxyWould(t *testing.T) {
	f := newFAEnv(t)
	b := f.browser()
	if r := f.check(b, "GET", "/resource/api/recipe", "X-CSRF", "1"); r.StatusCode != 401 || r.json(t)["error"] != "unauthenticated" {
		t.Fatalf("no session: %s %s", r.Status, r.body)
	}
	b.login("/")

	r := f.check(b, "POST", "/resource/api/recipe?id=7", "X-CSRF", "1")
	if r.StatusCode != 200 {
		t.Fatalf("grant: %s %s", r.Status, r.body)
	}
	if sub, ok := f.op.ValidAccessToken(bearer(r)); !ok || sub != "alice" {
		t.Fatalf("Authorization %q is not alice's access token", r.Header.Get("Authorization"))
	}
	if r.Header.Get("X-Moat-Subject") != "alice" || r.Header.Get("X-Moat-Email") != "alice@example.com" {
		t.Errorf("identity headers: %v", r.Header)
	}
	if r.Header.Get("Cache-Control") != "no-store" || len(r.body) != 0 || r.Header.Get("Location") != "" {
		t.Errorf("grant answer: %v %q", r.Header, r.body)
	}
	// The same token the proxy path would send.
	if bearer(r) != f.accessToken(b.sessionCookie()) {
		t.Error("forward-auth token differs from the session's")
	}
	// Envoy's ext_authz: the method and path of the check are the call's.
	req, _ := http.NewRequest("DELETE", f.fa.URL+"/_moat/ext-authz/resource/api/recipe/7", nil)
	req.Header.Set("X-CSRF", "1")
	if r := f.send(b, req); r.StatusCode != 200 || bearer(r) == "" {
		t.Errorf("ext_authz: %s %s", r.Status, r.body)
	}
	// A route without token: allowed, and no token.
	if r := f.check(b, "GET", "/resource/api/public/x", "X-CSRF", "1"); r.StatusCode != 200 || r.Header.Get("Authorization") != "" {
		t.Errorf("public route: %s Authorization=%q", r.Status, r.Header.Get("Authorization"))
	}
	if n := len(f.upstream.requests()); n != 0 {
		t.Errorf("forward-auth reached the upstream %d times", n)
	}
}

func TestForwardAuthRefusals(t *testing.T) {
	f := newFAEnv(t)
	b := f.browser()
	b.login("/")
	for _, c := range []struct {
		name           string
		method, target string
		headers        []string
		status         int
		code           string
	}{
		{"no X-CSRF", "GET", "/resource/api/x", nil, 403, "csrf"},
		{"cross-site, even with X-CSRF", "POST", "/resource/api/x", []string{"X-CSRF", "1", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403, "csrf"},
		{"fetch-metadata cross-site", "POST", "/resource/api/x", []string{"X-CSRF", "1", "Sec-Fetch-Site", "cross-site"}, 403, "csrf"},
		{"method the route refuses", "DELETE", "/resource/read/x", []string{"X-CSRF", "1"}, 405, "method_not_allowed"},
		{"no route", "GET", "/elsewhere/x", []string{"X-CSRF", "1"}, 404, "not_found"},
		{"preflight from a foreign origin", "OPTIONS", "/resource/api/x", []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "POST"}, 403, "cors"},
		{"dot segments to reach a public route's neighbour", "GET", "/resource/api/public/../x", []string{"X-CSRF", "1"}, 400, "bad_forward_auth_request"},
		{"forged X-Forwarded-Method beside nginx's header", "DELETE", "/resource/read/x", []string{"X-CSRF", "1", "X-Forwarded-Method", "GET"}, 400, "bad_forward_auth_request"},
		{"forged X-Forwarded-Uri beside nginx's header", "GET", "/resource/api/x", []string{"X-CSRF", "1", "X-Forwarded-Uri", "/resource/api/public/x"}, 400, "bad_forward_auth_request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.check(b, c.method, c.target, c.headers...)
			if r.StatusCode != c.status || r.json(t)["error"] != c.code {
				t.Fatalf("%s %s", r.Status, r.body)
			}
			if r.Header.Get("Authorization") != "" || r.Header.Get("X-Moat-Subject") != "" {
				t.Errorf("a refusal carries a grant: %v", r.Header)
			}
			if r.Header.Get("Location") != "" {
				t.Errorf("a refusal redirects")
			}
			// nginx's auth_request drops the body: the header repeats it.
			if got := r.Header.Get("X-Moat-Error"); got != strings.TrimSpace(string(r.body)) {
				t.Errorf("X-Moat-Error = %q, body %q", got, r.body)
			}
		})
	}
	if r := f.check(b, "OPTIONS", "/resource/api/x", "Origin", "http://localhost:5173", "Access-Control-Request-Method", "POST"); r.StatusCode != 200 || r.Header.Get("Authorization") != "" {
		t.Errorf("preflight from an allowed origin: %s %v", r.Status, r.Header)
	}
	if r := f.check(b, "POST", "/resource/api/x", "X-CSRF", "1", "Origin", "http://localhost:5173", "Sec-Fetch-Site", "cross-site"); r.StatusCode != 200 {
		t.Errorf("call from an allowed origin: %s %s", r.Status, r.body)
	}
}

func TestForwardAuthUntrustedPeer(t *testing.T) {
	f := newFAEnv(t, func(c *config.Config) { c.ForwardAuth.TrustedProxies = []string{"10.0.0.0/8"} })
	b := f.browser()
	b.login("/")
	r := f.check(b, "GET", "/resource/api/x", "X-CSRF", "1")
	if r.StatusCode != 403 || r.json(t)["error"] != "untrusted_peer" || r.Header.Get("Authorization") != "" {
		t.Fatalf("untrusted peer: %s %v %s", r.Status, r.Header, r.body)
	}
	// A flood from an untrusted peer cannot flood the log: one warning
	// per interval, counting the refusals.
	for range 40 {
		f.check(b, "GET", "/resource/api/x", "X-CSRF", "1")
	}
	if n := strings.Count(f.logs.String(), "not in forward_auth.trusted_proxies"); n != 1 {
		t.Fatalf("%d warnings for 41 refusals, want 1", n)
	}
}

// TestForwardAuthMalformedFloodIsThrottled: any browser can make the
// gateway send malformed checks (headers of two conventions that
// disagree); a flood of them logs one warning per interval.
func TestForwardAuthMalformedFloodIsThrottled(t *testing.T) {
	f := newFAEnv(t)
	b := f.browser()
	b.login("/")
	for range 30 {
		if r := f.check(b, "GET", "/resource/api/x", "X-CSRF", "1", "X-Forwarded-Method", "POST"); r.StatusCode != 400 {
			t.Fatalf("disagreeing methods: %s, want 400", r.Status)
		}
	}
	if n := strings.Count(f.logs.String(), "forward-auth request refused"); n != 1 {
		t.Fatalf("%d warnings for 30 malformed checks, want 1", n)
	}
}

func TestForwardAuthIsNotOnTheBrowserListener(t *testing.T) {
	f := newFAEnv(t)
	b := f.browser()
	b.login("/")
	for _, p := range []string{"/_moat/forward-auth", "/_moat/ext-authz/resource/api/x", "/_moat/"} {
		r := b.send("GET", p, nil, "X-CSRF", "1", "X-Original-Method", "GET", "X-Original-URI", "/resource/api/x")
		if r.StatusCode != 404 || r.Header.Get("Authorization") != "" {
			t.Errorf("%s on the browser listener: %s %v", p, r.Status, r.Header)
		}
	}
	// Off unless configured.
	e := newEnv(t)
	if e.gw.ForwardAuth != nil {
		t.Error("forward-auth handler without forward_auth.listen")
	}
}

func TestForwardAuthRefreshesOnceAndEndsDeadSessions(t *testing.T) {
	f := newFAEnv(t)
	b := f.browser()
	b.login("/")
	first := f.accessToken(b.sessionCookie())
	f.expireAccessToken(b.sessionCookie())
	var wg sync.WaitGroup
	tokens := make([]string, 10)
	for i := range tokens {
		wg.Go(func() { tokens[i] = bearer(f.check(b, "GET", "/resource/api/x", "X-CSRF", "1")) })
	}
	wg.Wait()
	for i, at := range tokens {
		if _, ok := f.op.ValidAccessToken(at); !ok || at == first {
			t.Errorf("call %d got %q", i, at)
		}
	}
	if n := f.op.Grants("refresh_token"); n != 1 {
		t.Errorf("refresh grants = %d, want 1", n)
	}
	// The refresh token is dead: the session ends, the cookie is cleared.
	f.expireAccessToken(b.sessionCookie())
	f.op.Set(func(bh *oidctest.Behavior) { bh.RefreshError = "invalid_grant" })
	r := f.check(b, "GET", "/resource/api/x", "X-CSRF", "1")
	if r.StatusCode != 401 || !strings.Contains(r.Header.Get("Set-Cookie"), session.CookieName+"=;") {
		t.Errorf("dead grant: %s Set-Cookie=%q", r.Status, r.Header.Get("Set-Cookie"))
	}
	replay := f.browser()
	replay.setCookie(b.sessionCookie())
	if got := replay.get("/auth/checksession").json(t); got["loggedIn"] != false {
		t.Errorf("the session outlived its dead grant: %v", got)
	}
	// An IdP outage is a 503 and logs nobody out.
	f2 := newFAEnv(t)
	b2 := f2.browser()
	b2.login("/")
	f2.expireAccessToken(b2.sessionCookie())
	f2.op.Set(func(bh *oidctest.Behavior) { bh.RefreshError = "server_error" })
	if r := f2.check(b2, "GET", "/resource/api/x", "X-CSRF", "1"); r.StatusCode != 503 || r.json(t)["error"] != "unavailable" {
		t.Errorf("IdP outage: %s %s", r.Status, r.body)
	}
	if got := b2.get("/auth/checksession").json(t); got["loggedIn"] != true {
		t.Error("an IdP outage during forward-auth logged the user out")
	}
}

func TestForwardAuthRateLimits(t *testing.T) {
	f := newFAEnv(t, func(c *config.Config) {
		c.Limits.PerSession = config.Limit{Rate: 0.001, Burst: 2}
		c.Limits.PerIP = config.Limit{Rate: 0.001, Burst: 1000}
	})
	b := f.browser()
	b.login("/")
	for i := range 2 {
		if r := f.check(b, "GET", "/resource/api/x", "X-CSRF", "1"); r.StatusCode != 200 {
			t.Fatalf("call %d: %s", i, r.Status)
		}
	}
	r := f.check(b, "GET", "/resource/api/x", "X-CSRF", "1")
	if r.StatusCode != 429 || r.json(t)["error"] != "rate_limited" || r.Header.Get("Retry-After") == "" || r.Header.Get("Authorization") != "" {
		t.Fatalf("per-session limit: %s %v", r.Status, r.Header)
	}

	// The per-IP limit counts the browser's address, not the gateway's:
	// X-Forwarded-For from the trusted gateway names it.
	g := newFAEnv(t, func(c *config.Config) { c.Limits.PerIP = config.Limit{Rate: 0.001, Burst: 2} })
	for i := range 2 {
		if r := g.check(nil, "GET", "/resource/api/public/x", "X-CSRF", "1", "X-Forwarded-For", "203.0.113.1"); r.StatusCode != 200 {
			t.Fatalf("client 1 call %d: %s", i, r.Status)
		}
	}
	if r := g.check(nil, "GET", "/resource/api/public/x", "X-CSRF", "1", "X-Forwarded-For", "203.0.113.1"); r.StatusCode != 429 {
		t.Errorf("client 1 over its limit: %s", r.Status)
	}
	if r := g.check(nil, "GET", "/resource/api/public/x", "X-CSRF", "1", "X-Forwarded-For", "203.0.113.2"); r.StatusCode != 200 {
		t.Errorf("client 2 limited by client 1: %s", r.Status)
	}
}

// A reload's routes apply to forward-auth at once; forward_auth itself
// needs a restart.
func TestForwardAuthFollowsReload(t *testing.T) {
	f := newFAEnv(t)
	b := f.browser()
	b.login("/")
	if r := f.check(b, "GET", "/resource/new/x", "X-CSRF", "1"); r.StatusCode != 404 {
		t.Fatalf("before the reload: %s", r.Status)
	}
	next := *f.cfg
	next.Routes = append(append([]config.Route(nil), f.cfg.Routes...),
		config.Route{Prefix: "/resource/new/", Upstream: "http://127.0.0.1:1/new/", Token: config.TokenUser, Methods: []string{"GET"}})
	next.SetDefaults()
	if err := f.gw.Reload(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	if r := f.check(b, "GET", "/resource/new/x", "X-CSRF", "1"); r.StatusCode != 200 || bearer(r) == "" {
		t.Fatalf("after the reload: %s %s", r.Status, r.body)
	}
	moved := next
	moved.ForwardAuth.TrustedProxies = []string{"10.0.0.0/8"}
	if err := f.gw.Reload(context.Background(), &moved); err == nil || !strings.Contains(err.Error(), "forward_auth") {
		t.Errorf("a forward_auth change reloaded: %v", err)
	}
}

// BenchmarkForwardAuthDecision is moat's share of a call through a gateway
// with forward-auth: the check, in process (no HTTP), with a live session.
// Compare with BenchmarkProxyHotPath/moat, which also proxies.
//
//	go test -run '^$' -bench 'ForwardAuthDecision|ProxyHotPath/moat$' -benchmem ./internal/gateway/
func BenchmarkForwardAuthDecision(b *testing.B) {
	e := newEnv(b, func(c *config.Config) {
		c.ForwardAuth = config.ForwardAuth{Listen: "127.0.0.1:0", TrustedProxies: []string{"127.0.0.1"},
			IdentityHeaders: map[string]string{"X-Moat-Subject": "sub"}}
		unlimited(c)
	})
	br := e.browser()
	br.login("/")
	cookie := br.sessionCookie()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/_moat/forward-auth", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-URI", "/resource/api/item")
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("X-CSRF", "1")
			req.AddCookie(cookie)
			w := httptest.NewRecorder()
			e.gw.ForwardAuth.ServeHTTP(w, req)
			if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Authorization"), "Bearer ") {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

func TestHappyPathAndNoTokenReachesTheBrowser(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.OIDC.PostLogoutRedirectURL = c.PublicURL + "/" })
	b := e.browser()

	if got := b.get("/auth/checksession").json(t); got["loggedIn"] != false {
		t.Fatalf("checksession before login = %v", got)
	}
	if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusUnauthorized || r.json(t)["error"] != "unauthenticated" {
		t.Fatalf("API without session: %s %s", r.Status, r.body)
	}

	r := b.login("/after?x=1")
	if r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/after?x=1" {
		t.Fatalf("callback: %s Location=%q %s", r.Status, r.Header.Get("Location"), r.body)
	}
	if r.Header.Get("Referrer-Policy") != "no-referrer" || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("callback headers: %v", r.Header)
	}
	c := b.sessionCookie()
	if c == nil {
		t.Fatal("no session cookie after login")
	}

	cs := b.get("/auth/checksession").json(t)
	user, _ := cs["user"].(map[string]any)
	if cs["loggedIn"] != true || user["email"] != "alice@example.com" || user["sub"] != "alice" || cs["expiresAt"] == nil {
		t.Fatalf("checksession = %v", cs)
	}

	api := b.api("GET", "/resource/api/recipe?id=7")
	if api.StatusCode != http.StatusOK {
		t.Fatalf("API: %s %s", api.Status, api.body)
	}
	if got := api.json(t); got["path"] != "/api/recipe" || got["query"] != "id=7" || got["sub"] != "alice" {
		t.Errorf("upstream saw %v", got)
	}

	if r := b.get("/auth/userinfo"); r.StatusCode != http.StatusForbidden {
		t.Errorf("userinfo without X-CSRF: %s", r.Status)
	}
	ui := b.api("GET", "/auth/userinfo").json(t)
	if info, _ := ui["userInfo"].(map[string]any); info["email"] != "alice@example.com" {
		t.Errorf("userinfo = %v", ui)
	}

	// A refresh happens inside the flow, so its tokens are scanned too.
	e.expireAccessToken(c)
	if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusOK {
		t.Fatalf("API after expiry: %s %s", r.Status, r.body)
	}
	if n := e.op.Grants("refresh_token"); n != 1 {
		t.Errorf("refresh grants = %d, want 1", n)
	}

	lo := b.api("POST", "/auth/logout")
	if lo.StatusCode != http.StatusOK {
		t.Fatalf("logout: %s %s", lo.Status, lo.body)
	}
	// The body names a one-time moat URL; only its redirect carries the ID
	// token to the OP, through a navigation script cannot read.
	cont, _ := lo.json(t)["logoutUrl"].(string)
	if !strings.HasPrefix(cont, e.url+"/auth/logout/continue?h=") {
		t.Fatalf("logoutUrl = %q", cont)
	}
	r = b.get(cont)
	logoutURL := r.Header.Get("Location")
	if r.StatusCode != http.StatusFound || !strings.HasPrefix(logoutURL, e.op.Issuer+"/end_session?") {
		t.Errorf("continue: %s Location=%q", r.Status, logoutURL)
	}
	if again := b.get(cont); again.Header.Get("Location") != "/" {
		t.Errorf("the continue URL works twice: %q", again.Header.Get("Location"))
	}
	e.eventually("the refresh token is revoked with client authentication", func() bool {
		for _, req := range e.op.Requests() {
			if req.Path == "/revoke" && req.ClientAuth != "" && strings.HasPrefix(req.Form.Get("token"), "rt-") {
				return true
			}
		}
		return false
	})

	// Replaying the old cookie gets nothing.
	old := e.browser()
	old.setCookie(c)
	if r := old.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed cookie after logout: %s", r.Status)
	}
	if got := old.get("/auth/checksession").json(t); got["loggedIn"] != false {
		t.Errorf("replayed cookie checksession = %v", got)
	}

	// Every byte the browser received, headers included: no token and no
	// secret. The one sanctioned exception is the ID token as id_token_hint
	// in the Location of the redirect to the end-session endpoint, which
	// RP-Initiated Logout 1.0 §2 sends through the browser to the OP; never
	// in a body.
	headers := strings.ReplaceAll(b.headers.String(), "Location: "+logoutURL+"\r\n", "")
	for _, tok := range append(e.op.IssuedTokens(), e.op.ClientSecret) {
		if strings.Contains(headers, tok) || strings.Contains(b.bodies.String(), tok) {
			t.Errorf("the browser received a token or the client secret: %.16s...", tok)
			for _, line := range strings.Split(headers, "\n") {
				if strings.Contains(line, tok) {
					t.Logf("in header line %.80q", line)
				}
			}
		}
	}
	if idTokenIn(t, logoutURL) == "" {
		t.Error("the end-session redirect has no id_token_hint")
	}
	if len(e.op.IssuedTokens()) < 6 {
		t.Errorf("expected tokens from a login and a refresh, got %d", len(e.op.IssuedTokens()))
	}
}

func idTokenIn(t *testing.T, logoutURL string) string {
	u, err := url.Parse(logoutURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("id_token_hint")
}

func TestCookieAttributes(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.get("/auth/login")
	var login *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "__Host-moat-login" {
			login = c
		}
	}
	if login == nil || !login.Secure || !login.HttpOnly || login.SameSite != http.SameSiteLaxMode || login.Path != "/" || login.Domain != "" || login.MaxAge <= 0 || login.MaxAge > 600 {
		t.Errorf("login cookie = %+v", login)
	}
	r = b.get(r.Header.Get("Location"))
	r = b.get(r.Header.Get("Location"))
	var sc *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == session.CookieName {
			sc = c
		}
	}
	if sc == nil || sc.Name != "__Host-Http-moat" || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Domain != "" {
		t.Fatalf("session cookie = %+v", sc)
	}
	if _, err := session.ParseID(sc.Value); err != nil {
		t.Errorf("session cookie value is not an opaque 256-bit ID: %v", err)
	}
	if sc.MaxAge <= 0 || sc.MaxAge > int(e.cfg.Session.AbsoluteTimeout.D().Seconds()) {
		t.Errorf("session cookie Max-Age = %d", sc.MaxAge)
	}
	// Logout expires it with the same attributes.
	r = b.api("POST", "/auth/logout")
	for _, c := range r.Cookies() {
		if c.Name == session.CookieName && (c.MaxAge >= 0 || !c.Secure || c.Path != "/" || !c.HttpOnly) {
			t.Errorf("logout cookie = %+v", c)
		}
	}
}

func TestSessionIDRotatesAtLogin(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	planted := &http.Cookie{Name: session.CookieName, Value: session.NewID().Encode()}
	b.setCookie(planted)
	b.login("/")
	first := b.sessionCookie()
	if first == nil || first.Value == planted.Value {
		t.Fatal("a planted session ID survived login")
	}
	b.login("/")
	second := b.sessionCookie()
	if second.Value == first.Value {
		t.Fatal("the session ID did not rotate at the second login")
	}
	old := e.browser()
	old.setCookie(first)
	if r := old.api("GET", "/resource/api/x"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session replaced by a new login still works: %s", r.Status)
	}
}

func TestCallbackRejections(t *testing.T) {
	// start begins a login and returns the authorization response query.
	start := func(t *testing.T, e *env, b *browser) url.Values {
		r := b.get("/auth/login")
		r = b.get(r.Header.Get("Location"))
		u, _ := url.Parse(r.Header.Get("Location"))
		return u.Query()
	}
	cases := []struct {
		name   string
		reason string // of the login_failed audit line and moat_logins_failed_total
		setup  func(e *env)
		edit   func(t *testing.T, e *env, q url.Values, b *browser) (url.Values, *browser)
	}{
		{name: "missing state", reason: "state", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Del("state")
			return q, b
		}},
		{name: "unknown state", reason: "state", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Set("state", "forged")
			return q, b
		}},
		{name: "edited state", reason: "state", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Set("state", q.Get("state")+"x")
			return q, b
		}},
		{name: "other browser", reason: "binding", edit: func(_ *testing.T, e *env, q url.Values, _ *browser) (url.Values, *browser) { return q, e.browser() }},
		{name: "missing login cookie", reason: "binding", edit: func(_ *testing.T, e *env, q url.Values, b *browser) (url.Values, *browser) {
			b.mu.Lock()
			delete(b.cookies, "__Host-moat-login")
			b.mu.Unlock()
			return q, b
		}},
		{name: "wrong iss", reason: "issuer", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Set("iss", "https://evil.example")
			return q, b
		}},
		{name: "iss trailing slash", reason: "issuer", edit: func(_ *testing.T, e *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Set("iss", e.op.Issuer+"/")
			return q, b
		}},
		{name: "iss missing while advertised", reason: "issuer", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) { q.Del("iss"); return q, b }},
		{name: "missing code", reason: "state", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Del("code")
			return q, b
		}},
		{name: "injected code", reason: "rejected", edit: func(t *testing.T, e *env, q url.Values, b *browser) (url.Values, *browser) {
			other := start(t, e, e.browser()) // the attacker's own code
			q.Set("code", other.Get("code"))
			return q, b
		}},
		{name: "error response", reason: "idp_error", edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) {
			q.Del("code")
			q.Set("error", "access_denied")
			q.Set("error_description", "<script>alert(1)</script>")
			return q, b
		}},
		{name: "bad nonce in ID token", reason: "rejected", setup: func(e *env) {
			e.op.Set(func(bh *oidctest.Behavior) { bh.MutateIDToken = func(c map[string]any) { c["nonce"] = "x" } })
		}, edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) { return q, b }},
		{name: "alg none ID token", reason: "rejected", setup: func(e *env) { e.op.Set(func(bh *oidctest.Behavior) { bh.Sign = oidctest.SignNone }) },
			edit: func(_ *testing.T, _ *env, q url.Values, b *browser) (url.Values, *browser) { return q, b }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			b := e.browser()
			q, cb := tc.edit(t, e, start(t, e, b), b)
			tokenCalls := e.op.Grants("authorization_code")
			r := cb.get("/auth/callback?" + q.Encode())
			if tc.name == "error response" {
				// A genuine error answer goes back to the SPA, code only.
				if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || loc != "/?login_error=access_denied" {
					t.Errorf("callback: %s Location=%q", r.Status, loc)
				}
			} else if r.StatusCode < 400 || r.StatusCode >= 500 {
				t.Errorf("callback: %s, want 4xx", r.Status)
			}
			if cb.sessionCookie() != nil {
				t.Error("a session cookie was set")
			}
			if strings.Contains(string(r.body), "<script>") {
				t.Error("error_description reflected unescaped")
			}
			// Every failed callback leaves a login_failed audit line with its
			// reason (docs/operations.md), and counts it.
			if l := e.logs.String(); !strings.Contains(l, `"audit":true,"event":"login_failed","reason":"`+tc.reason+`"`) {
				t.Errorf("no login_failed audit line with reason %q:\n%s", tc.reason, l)
			}
			if n := e.labeledMetric("moat_logins_failed_total", "reason", tc.reason); n != 1 {
				t.Errorf("moat_logins_failed_total{reason=%q} = %v, want 1", tc.reason, n)
			}
			if tc.name != "injected code" && tc.setup == nil && e.op.Grants("authorization_code") != tokenCalls {
				t.Error("the code was redeemed although the callback was rejected")
			}
		})
	}
}

func TestStateIsSingleUse(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.get("/auth/login")
	r = b.get(r.Header.Get("Location"))
	cb := r.Header.Get("Location")
	if r := b.get(cb); r.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %s", r.Status)
	}
	// The back button: a logged-in browser goes home, no error page.
	r = b.get(cb)
	if r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/" {
		t.Errorf("second callback, logged in: %s %s", r.Status, r.body)
	}
	// Anyone else replaying it gets the friendly page and no session.
	other := e.browser()
	r = other.get(cb)
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.body), "already completed") || other.sessionCookie() != nil {
		t.Errorf("second callback, other browser: %s %s", r.Status, r.body)
	}
}

func TestParallelLoginsInTwoTabs(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	var cbs []string
	for range 2 {
		r := b.get("/auth/login")
		r = b.get(r.Header.Get("Location"))
		cbs = append(cbs, r.Header.Get("Location"))
	}
	for i := len(cbs) - 1; i >= 0; i-- {
		if r := b.get(cbs[i]); r.StatusCode != http.StatusFound {
			t.Errorf("tab %d callback: %s %s", i, r.Status, r.body)
		}
	}
}

func TestLoginRedirectCarriesPKCEStateNonce(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for range 20 {
		r := e.browser().get("/auth/login")
		u, _ := url.Parse(r.Header.Get("Location"))
		q := u.Query()
		if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") != e.url+"/auth/callback" {
			t.Fatalf("authorization request = %v", q)
		}
		for _, k := range []string{"state", "nonce", "code_challenge"} {
			v := q.Get(k)
			if len(v) < 43 || seen[v] {
				t.Fatalf("%s %q is short or repeated", k, v)
			}
			seen[v] = true
		}
	}
}

func TestRedirectURIIgnoresHostHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	req, _ := http.NewRequest("GET", e.url+"/auth/login", nil)
	req.Host = "evil.example"
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "host=evil.example")
	r := b.do(req)
	u, _ := url.Parse(r.Header.Get("Location"))
	if got := u.Query().Get("redirect_uri"); got != e.url+"/auth/callback" {
		t.Errorf("redirect_uri = %q", got)
	}
}

func TestReturnToOpenRedirects(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.FrontendURL = "http://localhost:5173/app" })
	cases := map[string]string{
		"/dashboard?tab=2":                    "http://localhost:5173/dashboard?tab=2",
		"http://localhost:5173/x":             "http://localhost:5173/x",
		"https://evil.example/":               "http://localhost:5173/app",
		"//evil.example":                      "http://localhost:5173/app",
		"/\\evil.example":                     "http://localhost:5173/app",
		"\\\\evil.example":                    "http://localhost:5173/app",
		"https:evil.example":                  "http://localhost:5173/app",
		"%2F%2Fevil.example":                  "http://localhost:5173/app",
		"/%2F%2Fevil.example":                 "http://localhost:5173/app",
		"/%5Cevil.example":                    "http://localhost:5173/app",
		"javascript:alert(1)":                 "http://localhost:5173/app",
		"http://localhost:5173@evil.example/": "http://localhost:5173/app",
		"http://localhost:51730/":             "http://localhost:5173/app",
		"/\t/evil.example":                    "http://localhost:5173/app",
		"":                                    "http://localhost:5173/app",
	}
	for in, want := range cases {
		b := e.browser()
		r := b.login(in)
		if got := r.Header.Get("Location"); got != want {
			t.Errorf("returnTo %q landed on %q, want %q", in, got, want)
		}
	}
}

func TestConcurrentCallsAfterExpiryRefreshOnce(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	first := e.accessToken(b.sessionCookie())
	e.expireAccessToken(b.sessionCookie())

	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Go(func() { statuses[i] = b.api("GET", "/resource/api/recipe").StatusCode })
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("call %d: %d", i, s)
		}
	}
	if n := e.op.Grants("refresh_token"); n != 1 {
		t.Errorf("refresh grants = %d, want exactly 1", n)
	}
	if e.accessToken(b.sessionCookie()) == first {
		t.Error("the access token was not replaced")
	}
	// The rotated refresh token was stored: the next refresh works.
	e.expireAccessToken(b.sessionCookie())
	if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusOK {
		t.Errorf("second refresh: %s %s", r.Status, r.body)
	}
	if n := e.op.Grants("refresh_token"); n != 2 {
		t.Errorf("refresh grants = %d, want 2", n)
	}
}

func TestRefreshFailures(t *testing.T) {
	t.Run("invalid_grant ends the session", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		c := b.sessionCookie()
		e.expireAccessToken(c)
		e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshError = "invalid_grant" })
		r := b.api("GET", "/resource/api/recipe")
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %s, want 401", r.Status)
		}
		e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshError = "" })
		replay := e.browser()
		replay.setCookie(c)
		if got := replay.get("/auth/checksession").json(t); got["loggedIn"] != false {
			t.Errorf("session survived invalid_grant: %v", got)
		}
		if n := len(e.upstream.requests()); n != 0 {
			t.Errorf("upstream called %d times", n)
		}
	})
	for _, mode := range []string{"server_error", "hang", "down"} {
		t.Run("IdP "+mode+" keeps the session", func(t *testing.T) {
			e := newEnv(t)
			b := e.browser()
			b.login("/")
			e.expireAccessToken(b.sessionCookie())
			if mode == "down" {
				e.op.Close()
			} else {
				e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshError = mode })
			}
			r := b.api("GET", "/resource/api/recipe")
			if r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
				t.Fatalf("status %s %s, want 503", r.Status, r.body)
			}
			if got := b.get("/auth/checksession").json(t); got["loggedIn"] != true {
				t.Fatalf("session lost during an IdP outage: %v", got)
			}
			if mode == "down" {
				return
			}
			e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshError = "" })
			if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusOK {
				t.Errorf("after recovery: %s %s", r.Status, r.body)
			}
		})
	}
}

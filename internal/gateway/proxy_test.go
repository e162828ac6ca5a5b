package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/session"
)

func TestUpstreamHeaderHygiene(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	spoofed := map[string]string{
		"Authorization":            "Bearer attacker",
		"Proxy-Authorization":      "Basic eDp5",
		"X-Forwarded-For":          "6.6.6.6",
		"X-Forwarded-Host":         "evil.example",
		"X-Forwarded-Proto":        "https",
		"X-Forwarded-Prefix":       "/admin",
		"Forwarded":                "for=6.6.6.6;host=evil.example",
		"X-Real-Ip":                "6.6.6.6",
		"X-User-Id":                "admin",
		"X-Forwarded-User":         "admin",
		"X-Forwarded-Client-Cert":  "Hash=abc",
		"X-Original-Url":           "/admin",
		"X-Rewrite-Url":            "/admin",
		"X-Forwarded-Access-Token": "forged",
		"X-Http-Method-Override":   "DELETE",
		"Remote-User":              "admin",
		"X-Amzn-Oidc-Identity":     "admin",
	}
	req, _ := http.NewRequest("GET", e.url+"/resource/api/recipe", nil)
	req.Host = "evil.example"
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	for k, v := range spoofed {
		req.Header.Set(k, v)
	}
	req.AddCookie(&http.Cookie{Name: "other", Value: "x"})
	r := b.do(req)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("%s %s", r.Status, r.body)
	}
	reqs := e.upstream.requests()
	got := reqs[len(reqs)-1]
	for k, v := range spoofed {
		if have := got.Header.Values(k); len(have) > 0 && (k != "Authorization" || strings.Contains(have[0], v)) {
			if k == "Authorization" {
				t.Errorf("upstream saw the browser's Authorization %q", have)
			} else {
				t.Errorf("upstream saw %s: %q", k, have)
			}
		}
	}
	if got.Header.Get("Cookie") != "" {
		t.Errorf("upstream saw the browser's cookies: %q", got.Header.Get("Cookie"))
	}
	if at := e.accessToken(b.sessionCookie()); got.Header.Get("Authorization") != "Bearer "+at {
		t.Errorf("upstream Authorization = %q", got.Header.Get("Authorization"))
	}
	if got.Host != strings.TrimPrefix(e.upstream.URL, "http://") {
		t.Errorf("upstream Host = %q", got.Host)
	}
	if got.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id forwarded")
	}
	// Upstream CORS and cookies never reach the browser.
	if r.Header.Get("Access-Control-Allow-Origin") != "" || len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("upstream headers leaked: %v", r.Header)
	}
	if b.sessionCookie().Value == "planted" {
		t.Error("the upstream overwrote moat's session cookie")
	}
}

// rawGet sends a request line exactly as written, bypassing Go's URL
// handling, as an attacker's client would.
func rawGet(t *testing.T, e *env, b *browser, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n%s: %s\r\nCookie: %s=%s\r\nConnection: close\r\n\r\n",
		target, csrf.HeaderName, csrf.HeaderValue, session.CookieName, b.sessionCookie().Value)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestPathTricksNeverLeaveTheRoute(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	attacks := []string{
		"/resource/api/../admin",
		"/resource/api/..;/admin",
		"/resource/api/x/..;jsessionid=1/..;/admin",
		"/resource/api/..%2fadmin",
		"/resource/api/%2e%2e/admin",
		"/resource/api/%2e%2e%2fadmin",
		"/resource/api/%252e%252e/admin",
		"/resource/api/..%5cadmin",
		"/resource/api/..\\admin",
		"/resource/api/orders/..%2F..%2Fadmin",
		"/resource/api/%2F%2Fevil.example/x",
		"/resource/api/x%00y",
		"/resource/api/./x",
		"/resource/api/@evil.example",
		"/resource/api//evil.example/x",
		"/resource/api/http://evil.example/x",
		"http://evil.example/resource/api/x",
	}
	for _, a := range attacks {
		status, body := rawGet(t, e, b, a)
		if status == http.StatusOK {
			// Allowed through: then it must have stayed below /api/.
			if !strings.Contains(body, `"path":"/api/`) || strings.Contains(body, "..") || strings.Contains(body, "admin\"") && !strings.Contains(body, "/api/") {
				t.Errorf("%s reached %s", a, body)
			}
		}
	}
	for _, r := range e.upstream.requests() {
		p := r.URL.EscapedPath()
		if !strings.HasPrefix(p, "/api/") || strings.Contains(strings.ToLower(p), "%2e") || strings.Contains(p, "..") || strings.Contains(strings.ToLower(p), "%2f") || strings.Contains(strings.ToLower(p), "%5c") {
			t.Errorf("upstream received %q", p)
		}
		if r.Host != strings.TrimPrefix(e.upstream.URL, "http://") {
			t.Errorf("upstream request went to Host %q", r.Host)
		}
	}
}

func TestCSRFMatrix(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	type req struct {
		method, path, body, ctype string
		headers                   []string
	}
	form := "application/x-www-form-urlencoded"
	cases := map[string]req{
		"GET without header":           {method: "GET", path: "/resource/api/x"},
		"POST without body":            {method: "POST", path: "/resource/api/x"},
		"form POST":                    {method: "POST", path: "/resource/api/x", body: "a=1", ctype: form},
		"text POST":                    {method: "POST", path: "/resource/api/x", body: "{}", ctype: "text/plain"},
		"PUT":                          {method: "PUT", path: "/resource/api/x", body: "{}", ctype: "application/json"},
		"DELETE":                       {method: "DELETE", path: "/resource/api/x"},
		"PATCH":                        {method: "PATCH", path: "/resource/api/x"},
		"wrong header value":           {method: "GET", path: "/resource/api/x", headers: []string{csrf.HeaderName, "0"}},
		"foreign Origin with header":   {method: "POST", path: "/resource/api/x", headers: []string{csrf.HeaderName, "1", "Origin", "https://evil.example"}},
		"cross-site fetch with header": {method: "POST", path: "/resource/api/x", headers: []string{csrf.HeaderName, "1", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
		"public route without header":  {method: "GET", path: "/resource/api/public/x"},
		"logout POST without header":   {method: "POST", path: "/auth/logout"},
		"logout form POST cross-site":  {method: "POST", path: "/auth/logout", body: "a=1", ctype: form, headers: []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}},
		"null Origin with header":      {method: "POST", path: "/resource/api/x", headers: []string{csrf.HeaderName, "1", "Origin", "null"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			before := len(e.upstream.requests())
			headers := c.headers
			if c.ctype != "" {
				headers = append(headers, "Content-Type", c.ctype)
			}
			r := b.send(c.method, c.path, strings.NewReader(c.body), headers...)
			if r.StatusCode != http.StatusForbidden || r.json(t)["error"] != "csrf" {
				t.Errorf("%s %s: %s %s, want 403 csrf", c.method, c.path, r.Status, r.body)
			}
			if n := len(e.upstream.requests()) - before; n != 0 {
				t.Errorf("the upstream received %d requests", n)
			}
		})
	}
	// Logout was refused above: the session is still alive.
	if got := b.get("/auth/checksession").json(t); got["loggedIn"] != true {
		t.Error("a refused logout ended the session")
	}
	// And with the header, every method passes, from moat's origin or an
	// allow-listed one.
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		if r := b.api(m, "/resource/api/x"); r.StatusCode != http.StatusOK {
			t.Errorf("%s with header: %s %s", m, r.Status, r.body)
		}
	}
	if r := b.send("POST", "/resource/api/x", nil, csrf.HeaderName, "1", "Origin", "http://localhost:5173", "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusOK {
		t.Errorf("allow-listed origin: %s %s", r.Status, r.body)
	}
}

func TestCSRFFetchMetadataMode(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.CSRF.Mode = config.CSRFFetchMetadata })
	b := e.browser()
	b.login("/")
	cases := []struct {
		name    string
		method  string
		headers []string
		ok      bool
	}{
		{"same-origin GET", "GET", []string{"Sec-Fetch-Site", "same-origin"}, true},
		{"same-origin POST", "POST", []string{"Sec-Fetch-Site", "same-origin", "Origin", e.url}, true},
		{"typed URL", "GET", []string{"Sec-Fetch-Site", "none"}, true},
		{"cross-site GET", "GET", []string{"Sec-Fetch-Site", "cross-site"}, false},
		{"cross-site POST", "POST", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, false},
		{"same-site POST from a sibling", "POST", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://sibling.localhost"}, false},
		{"allowed origin", "POST", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://localhost:5173"}, true},
		{"old browser, foreign Origin", "POST", []string{"Origin", "https://evil.example"}, false},
		{"old browser, foreign Referer", "DELETE", []string{"Referer", "https://evil.example/page"}, false},
		{"old browser, own Referer", "DELETE", []string{"Referer", e.url + "/page"}, true},
	}
	for _, c := range cases {
		before := len(e.upstream.requests())
		r := b.send(c.method, "/resource/api/x", nil, c.headers...)
		if ok := r.StatusCode == http.StatusOK; ok != c.ok {
			t.Errorf("%s: %s, want ok=%v", c.name, r.Status, c.ok)
		}
		if !c.ok && len(e.upstream.requests()) != before {
			t.Errorf("%s: reached the upstream", c.name)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	preflight := func(origin string) *response {
		return b.send("OPTIONS", "/resource/api/x", nil, "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "x-csrf, content-type")
	}
	for _, origin := range []string{"https://evil.example", "null", "http://localhost:5173.evil.example", "http://localhost"} {
		r := preflight(origin)
		if acao := r.Header.Get("Access-Control-Allow-Origin"); acao != "" || r.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight from %s approved: ACAO=%q", origin, acao)
		}
		r = b.send("GET", "/auth/checksession", nil, "Origin", origin)
		if acao := r.Header.Get("Access-Control-Allow-Origin"); acao != "" {
			t.Errorf("GET from %s got ACAO=%q", origin, acao)
		}
	}
	r := preflight("http://localhost:5173")
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" ||
		r.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "X-CSRF") {
		t.Errorf("allowed preflight: %s %v", r.Status, r.Header)
	}
	if len(e.upstream.requests()) != 0 {
		t.Error("a preflight reached the upstream")
	}
}

func TestLocalHandlerBehindSession(t *testing.T) {
	e := newEnv(t)
	e.gw.Handle("GET /api/protected-data", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := userFrom(r)
		if !ok {
			t.Error("no user in a local handler")
		}
		fmt.Fprintf(w, `{"hello":%q}`, id)
	}))
	b := e.browser()
	if r := b.api("GET", "/api/protected-data"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("without session: %s", r.Status)
	}
	b.login("/")
	if r := b.get("/api/protected-data"); r.StatusCode != http.StatusForbidden {
		t.Errorf("without CSRF header: %s", r.Status)
	}
	if r := b.api("GET", "/api/protected-data"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"alice"`) {
		t.Errorf("with session: %s %s", r.Status, r.body)
	}
}

func TestHealthAndMethods(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	if r := b.get("/healthz"); r.StatusCode != http.StatusOK {
		t.Errorf("healthz: %s", r.Status)
	}
	if r := b.get("/readyz"); r.StatusCode != http.StatusOK || r.json(t)["ready"] != true {
		t.Errorf("readyz: %s %s", r.Status, r.body)
	}
	r := b.send("DELETE", "/auth/checksession", nil, csrf.HeaderName, "1")
	if r.StatusCode != http.StatusMethodNotAllowed || r.json(t)["error"] != "method_not_allowed" || r.Header.Get("Allow") != "GET" {
		t.Errorf("DELETE checksession: %s %v %s", r.Status, r.Header, r.body)
	}
	if r := b.get("/auth/nope"); r.StatusCode != http.StatusNotFound || r.json(t)["error"] != "not_found" {
		t.Errorf("unknown auth path: %s %s", r.Status, r.body)
	}
	e.op.Close()
	if r := newEnvDown(t).browser().get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with the IdP down: %s %s", r.Status, r.body)
	}
}

func newEnvDown(t *testing.T) *env {
	return newEnv(t, func(c *config.Config) { c.OIDC.Issuer = "http://127.0.0.1:1" })
}

func TestReadyzProbesUpstreams(t *testing.T) {
	var probes atomic.Int32
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if r.URL.Path != "/health" || r.Header.Get("Authorization") != "" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer healthy.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Name: "orders", Prefix: "/orders/", Upstream: healthy.URL + "/v1/", HealthPath: "/health"},
			config.Route{Name: "billing", Prefix: "/billing/", Upstream: "http://127.0.0.1:1/", HealthPath: "/health"})
	})
	r := e.browser().get("/readyz")
	code, checks := adminReadyz(t, e.gw)
	if code != http.StatusOK || checks["upstream orders"] != "ok" || checks["upstream billing"] != "unreachable" {
		t.Errorf("admin readyz: %d %v", code, checks)
	}
	if r.StatusCode != http.StatusOK || strings.Contains(string(r.body), "orders") || strings.Contains(string(r.body), "billing") {
		t.Errorf("public readyz: %s %s; the route names are for the admin listener", r.Status, r.body)
	}
	// /readyz is public: asking it often must not multiply upstream traffic.
	for range 20 {
		e.browser().get("/readyz")
	}
	if n := probes.Load(); n != 1 {
		t.Errorf("21 readiness checks probed the upstream %d times, want 1 (probes are cached)", n)
	}
}

// Hop-by-hop headers (RFC 9110 §7.6.1) stop at moat in both directions,
// including any header a Connection field names.
func TestHopByHopHeaders(t *testing.T) {
	var seen http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		h := w.Header()
		h.Set("Connection", "X-Up-Secret")
		h.Set("X-Up-Secret", "upstream internal")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("X-Kept", "yes")
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/hop/", Upstream: up.URL + "/", Token: config.TokenNone,
			ForwardHeaders: []string{"X-Kept"}}) // an app's own end-to-end header
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /hop/x HTTP/1.1\r\nHost: x\r\n%s: %s\r\nConnection: keep-alive, X-Secret\r\nX-Secret: browser secret\r\n"+
		"Keep-Alive: timeout=99\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n", csrf.HeaderName, csrf.HeaderValue)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection"} {
		if v := seen.Values(k); len(v) > 0 {
			t.Errorf("upstream saw %s: %q", k, v)
		}
	}
	if c := seen.Get("Connection"); strings.Contains(strings.ToLower(c), "x-secret") {
		t.Errorf("upstream saw Connection: %q", c)
	}
	for _, k := range []string{"X-Up-Secret", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			t.Errorf("browser saw %s: %q", k, v)
		}
	}
	if seen.Get("X-Kept") != "yes" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("an end-to-end header was dropped: request %q, response %q", seen.Get("X-Kept"), resp.Header.Get("X-Kept"))
	}
}

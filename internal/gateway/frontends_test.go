package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

// twoFrontends is one moat on one listener serving frontend a at
// http://localhost:PORT and frontend b at http://127.0.0.1:PORT, each with
// its own OP (issuer) and upstream. Both OPs know a user "alice".
type twoFrontends struct {
	t      *testing.T
	port   string
	ops    map[string]*oidctest.Provider
	hits   map[string]*atomic.Int32 // upstream calls, by frontend
	subs   map[string]chan string   // the sub each upstream call's token named
	gw     *gateway.Gateway
	clock  *clock
	logs   *logtest.Buffer
	urls   map[string]string
	client *http.Client
}

const adminToken = "frontends-test-admin-token-0123456789"

// newTwoFrontends starts moat with frontends a and b; setup, if given,
// adjusts each one's OP before moat first reads its discovery document.
func newTwoFrontends(t *testing.T, setup ...func(name string, op *oidctest.Provider)) *twoFrontends {
	return newFrontendsAt(t, byHost, setup...)
}

// byHost puts a at localhost and b at 127.0.0.1, on moat's port.
func byHost(port string) (a, b string) { return "http://localhost:" + port, "http://127.0.0.1:" + port }

// newFrontendsAt is newTwoFrontends with a's and b's public_url made
// from moat's port.
func newFrontendsAt(t *testing.T, at func(port string) (a, b string), setup ...func(name string, op *oidctest.Provider)) *twoFrontends {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	a, b := at(port)
	f := &twoFrontends{t: t, port: port, ops: map[string]*oidctest.Provider{}, hits: map[string]*atomic.Int32{},
		subs: map[string]chan string{}, logs: &logtest.Buffer{}, clock: &clock{},
		urls: map[string]string{"a": a, "b": b}}
	cfg := &config.Config{
		Listen:  ln.Addr().String(),
		Session: config.Session{Keys: []secret.String{secret.String(session.NewKey())}},
		Limits:  config.Limits{Login: config.Limit{Rate: 1e4, Burst: 1e4}},
		Admin:   config.Admin{Listen: "127.0.0.1:0", Token: secret.String(adminToken)},
		// Only its address is configured: the test serves ForwardAuth itself.
		ForwardAuth: config.ForwardAuth{Listen: "127.0.0.1:1", TrustedProxies: []string{"127.0.0.1"},
			IdentityHeaders: map[string]string{"X-Moat-Subject": "sub"}},
	}
	for _, name := range []string{"a", "b"} {
		op := oidctest.New(t, f.urls[name]+"/auth/callback")
		op.ClientID = "client-" + name // before any request reaches the OP
		for _, s := range setup {
			s(name, op)
		}
		f.ops[name], f.hits[name], f.subs[name] = op, &atomic.Int32{}, make(chan string, 16)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.hits[name].Add(1)
			sub, ok := op.ValidAccessToken(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			if !ok {
				sub = "(a token of another issuer)"
			}
			f.subs[name] <- sub
			io.WriteString(w, `{}`)
		}))
		t.Cleanup(up.Close)
		spa := t.TempDir()
		if err := os.WriteFile(filepath.Join(spa, "index.html"), []byte("<!doctype html><title>app "+name+"</title>"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.Frontends = append(cfg.Frontends, config.Frontend{
			Name: name, PublicURL: f.urls[name], SPA: config.SPA{Dir: spa},
			OIDC: config.OIDC{Issuer: op.Issuer, ClientID: op.ClientID, ClientSecret: secret.String(op.ClientSecret),
				Timeout: config.Duration(2 * time.Second)},
			Routes: []config.Route{{Prefix: "/api/", Upstream: up.URL + "/"}},
		})
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(f.logs, nil))
	gw, err := gateway.New(context.Background(), cfg, log, gateway.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.gw = gw
	srv, _ := gateway.NewHTTPServer(cfg, gw, log)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	// localhost is dialled at 127.0.0.1 whatever the resolver says.
	dialer := &net.Dialer{}
	f.client = &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, strings.Replace(addr, "localhost:", "127.0.0.1:", 1))
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// agent is a browser's cookie jar: cookies by host (not port, as browsers
// keep them), Secure ones over loopback http included.
type agent map[string]map[string]string

func (f *twoFrontends) do(a agent, method, rawURL string, header http.Header) (*http.Response, []byte) {
	f.t.Helper()
	req, _ := http.NewRequest(method, rawURL, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	for name, value := range a[req.URL.Hostname()] {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if a[req.URL.Hostname()] == nil {
			a[req.URL.Hostname()] = map[string]string{}
		}
		if c.MaxAge < 0 {
			delete(a[req.URL.Hostname()], c.Name)
		} else {
			a[req.URL.Hostname()][c.Name] = c.Value
		}
	}
	return resp, body
}

// login logs a in at frontend name and returns where the callback sent
// the browser.
func (f *twoFrontends) login(a agent, name string) string {
	f.t.Helper()
	u := f.urls[name] + "/auth/login"
	for range 3 { // moat → OP → moat's callback
		resp, body := f.do(a, "GET", u, nil)
		if resp.StatusCode != http.StatusFound {
			f.t.Fatalf("login at %s: GET %s: %s %s", name, u, resp.Status, body)
		}
		u = resp.Header.Get("Location")
	}
	return u
}

func (f *twoFrontends) session(a agent, name string) map[string]any {
	f.t.Helper()
	_, body := f.do(a, "GET", f.urls[name]+"/auth/checksession", nil)
	var out map[string]any
	json.Unmarshal(body, &out)
	return out
}

func (f *twoFrontends) api(a agent, name string) int {
	f.t.Helper()
	resp, _ := f.do(a, "GET", f.urls[name]+"/api/x", http.Header{csrf.HeaderName: {csrf.HeaderValue}})
	return resp.StatusCode
}

// TestFrontendsIsolated: two frontends on one moat, by host, each with its
// own issuer and client. Each browser sees its own session; a session
// cookie of one frontend replayed at the other authenticates nothing and
// reaches no upstream; a back-channel logout at one ends only its own
// sessions, though the other's user has the same sub.
func TestFrontendsIsolated(t *testing.T) {
	f := newTwoFrontends(t)
	user := agent{}
	f.login(user, "a")
	f.login(user, "b")
	for _, name := range []string{"a", "b"} {
		s := f.session(user, name)
		if u, _ := s["user"].(map[string]any); s["loggedIn"] != true || u["sub"] != "alice" || u["iss"] != f.ops[name].Issuer {
			t.Fatalf("%s: checksession = %v, want alice of %s", name, s, f.ops[name].Issuer)
		}
		if code := f.api(user, name); code != http.StatusOK {
			t.Fatalf("%s: api = %d", name, code)
		}
		if sub := <-f.subs[name]; sub != "alice" {
			t.Errorf("%s's upstream got a token of %q, want its own issuer's alice", name, sub)
		}
	}
	cookieA := user["localhost"][session.CookieName+"-a"]
	cookieB := user["127.0.0.1"][session.CookieName+"-b"]
	if cookieA == "" || cookieB == "" || len(user["localhost"]) > 2 || len(user["127.0.0.1"]) > 2 {
		t.Fatalf("cookies: %v", user)
	}

	// A's session ID replayed at B, under either cookie name, and under
	// the single-frontend name: no session, no upstream call.
	hitsB := f.hits["b"].Load()
	for _, name := range []string{session.CookieName + "-b", session.CookieName + "-a", session.CookieName} {
		thief := agent{"127.0.0.1": {name: cookieA}}
		if code := f.api(thief, "b"); code != http.StatusUnauthorized {
			t.Errorf("a's session ID as %s at b: api = %d, want 401", name, code)
		}
		if s := f.session(thief, "b"); s["loggedIn"] != false {
			t.Errorf("a's session ID as %s at b: checksession = %v", name, s)
		}
	}
	if f.hits["b"].Load() != hitsB {
		t.Error("b's upstream was called with a's session")
	}

	// Back-channel logout of alice at a's OP, delivered to a: a's session
	// ends, b's (same sub, other issuer) lives. Delivered to b, it is
	// refused.
	post := func(name, token string) int {
		resp, err := f.client.PostForm(f.urls[name]+"/auth/backchannel-logout", url.Values{"logout_token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Signed by a key b's issuer never had: refused (503, as for any
	// unknown key, which the OP may retry).
	if code := post("b", f.ops["a"].LogoutToken("alice", "", nil)); code == http.StatusOK {
		t.Errorf("a's logout token at b: %d", code)
	}
	// b's issuer, for another client (a's client_id as audience): 400.
	otherClient := f.ops["b"].LogoutToken("alice", "", func(c map[string]any) { c["aud"] = f.ops["a"].ClientID })
	if code := post("b", otherClient); code != http.StatusBadRequest {
		t.Errorf("a logout token for another client at b: %d, want 400", code)
	}
	if s := f.session(user, "b"); s["loggedIn"] != true {
		t.Fatalf("b's session ended by a logout token that is not b's: %v", s)
	}
	if code := post("a", f.ops["a"].LogoutToken("alice", "", nil)); code != http.StatusOK {
		t.Fatalf("a's logout token at a: %d", code)
	}
	if s := f.session(user, "a"); s["loggedIn"] != false {
		t.Errorf("a's session survived its back-channel logout: %v", s)
	}
	f.clock.Advance(time.Second) // past session.cache_ttl: the store decides
	if s := f.session(user, "b"); s["loggedIn"] != true {
		t.Errorf("b's session of the same sub ended with a's back-channel logout: %v", s)
	}
	if code := f.api(user, "b"); code != http.StatusOK {
		t.Errorf("b's api after a's logout: %d", code)
	} else {
		<-f.subs["b"]
	}
	// Metrics: the frontend label says where each login and logout was.
	metric := &env{t: t, gw: f.gw}
	for _, name := range []string{"a", "b"} {
		if n := metric.labeledMetric("moat_logins_completed_total", "frontend", name); n != 1 {
			t.Errorf("moat_logins_completed_total{frontend=%q} = %v, want 1", name, n)
		}
	}
	if n := metric.labeledMetric("moat_backchannel_logouts_total", "frontend", "a"); n != 1 {
		t.Errorf("moat_backchannel_logouts_total{frontend=\"a\"} = %v, want 1", n)
	}
	// Each frontend's client called its own issuer's token endpoint: its
	// IdP latency is labelled with its name.
	mfs, err := f.gw.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	tokenCalls := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "moat_idp_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == "token" {
				tokenCalls[labels["frontend"]] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if tokenCalls["a"] == 0 || tokenCalls["b"] == 0 || len(tokenCalls) != 2 {
		t.Errorf("IdP token calls by frontend label: %v, want a and b", tokenCalls)
	}
}

// TestFrontendsLoginTransactions: a login started at a and finished at b's
// callback (the browser-binding cookie carried over, a's code and state)
// finds no transaction at b: its keys are b's own.
func TestFrontendsLoginTransactions(t *testing.T) {
	f := newTwoFrontends(t)
	user := agent{}
	resp, _ := f.do(user, "GET", f.urls["a"]+"/auth/login", nil)
	resp, _ = f.do(user, "GET", resp.Header.Get("Location"), nil) // a's OP approves
	callback, _ := url.Parse(resp.Header.Get("Location"))
	if callback.Host != "localhost:"+f.port {
		t.Fatalf("a's OP redirected to %s", callback)
	}
	user["127.0.0.1"] = user["localhost"] // the binding cookie too
	callback.Host = "127.0.0.1:" + f.port
	resp, body := f.do(user, "GET", callback.String(), nil)
	if resp.StatusCode == http.StatusFound && strings.HasSuffix(resp.Header.Get("Location"), "/") {
		t.Fatalf("b's callback with a's transaction: %s %s", resp.Status, body)
	}
	if _, ok := user["127.0.0.1"][session.CookieName+"-b"]; ok {
		t.Fatal("b created a session from a's login")
	}
	if !strings.Contains(f.logs.String(), `"reason":"state"`) {
		t.Errorf("b's callback failed, but not for want of the transaction:\n%s", f.logs)
	}
	if f.ops["b"].Grants("authorization_code") != 0 {
		t.Error("b redeemed a code")
	}
}

// TestFrontendsForwardAuth: forward-auth decides with the frontend the
// original request's host (X-Forwarded-Host) names: a's session grants a's
// route with a's token, and nothing at b's host; an unknown host is 421.
func TestFrontendsForwardAuth(t *testing.T) {
	f := newTwoFrontends(t)
	fa := httptest.NewServer(f.gw.ForwardAuth)
	t.Cleanup(fa.Close)
	user := agent{}
	f.login(user, "a")
	cookie := user["localhost"][session.CookieName+"-a"]
	check := func(host, cookieName string) *http.Response {
		return forwardAuthGET(t, fa.URL, host, "/api/x", map[string]string{cookieName: cookie})
	}
	r := check("localhost:"+f.port, session.CookieName+"-a")
	at := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if sub, ok := f.ops["a"].ValidAccessToken(at); r.StatusCode != http.StatusOK || !ok || sub != "alice" {
		t.Fatalf("a's session at a: %s, a token of a's OP: %v", r.Status, ok)
	}
	for _, name := range []string{session.CookieName + "-a", session.CookieName + "-b"} {
		if r := check("127.0.0.1:"+f.port, name); r.StatusCode != http.StatusUnauthorized || r.Header.Get("Authorization") != "" {
			t.Errorf("a's session ID as %s at b's host: %s, a token: %v", name, r.Status, r.Header.Get("Authorization") != "")
		}
	}
	if r := check("evil.example", session.CookieName+"-a"); r.StatusCode != http.StatusMisdirectedRequest || r.Header.Get("Authorization") != "" {
		t.Errorf("unknown host: %s", r.Status)
	}
}

// forwardAuthGET asks moat's forward-auth at faURL, as a gateway would,
// about a GET of uri at host that carries cookies and the CSRF header.
func forwardAuthGET(t *testing.T, faURL, host, uri string, cookies map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", faURL+"/_moat/forward-auth", nil)
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URI", uri)
	req.Header.Set("X-Forwarded-Host", host)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	for name, value := range cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestFrontendsUnknownHost: a request for no frontend's host is a 421 with
// a JSON body; health checks are answered whatever the host.
func TestFrontendsUnknownHost(t *testing.T) {
	f := newTwoFrontends(t)
	for _, host := range []string{"example.com", "localhost", "127.0.0.1:1", "localhost:" + f.port + "."} {
		req, _ := http.NewRequest("GET", f.urls["b"]+"/auth/login", nil)
		req.Host = host
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest || body["error"] != "unknown_host" {
			t.Errorf("Host %q: %s %v", host, resp.Status, body)
		}
		req, _ = http.NewRequest("GET", f.urls["b"]+"/healthz", nil)
		req.Host = host
		if resp, err := f.client.Do(req); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("Host %q: /healthz %v %v", host, resp.Status, err)
		} else {
			resp.Body.Close()
		}
	}
	if f.ops["a"].Grants("authorization_code") != 0 || f.ops["b"].Grants("authorization_code") != 0 {
		t.Error("a misdirected request reached an OP")
	}
}

// TestFrontendsReadiness: a frontend's host gets that frontend's
// readiness; a /readyz sent to an address (a load balancer's) or to the
// admin listener covers every frontend, and the admin one says which is
// not ready and why.
func TestFrontendsReadiness(t *testing.T) {
	f := newTwoFrontends(t, func(name string, op *oidctest.Provider) {
		if name == "b" {
			op.Set(func(b *oidctest.Behavior) {
				b.MutateDiscovery = func(doc map[string]any) { doc["response_types_supported"] = []string{"id_token"} }
			})
		}
	})
	get := func(host string) (int, string) {
		req, _ := http.NewRequest("GET", f.urls["a"]+"/readyz", nil)
		req.Host = host
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	for _, c := range []struct {
		host string
		code int
	}{
		{"localhost:" + f.port, http.StatusOK},                 // a
		{"127.0.0.1:" + f.port, http.StatusServiceUnavailable}, // b
		{"10.0.0.1:" + f.port, http.StatusServiceUnavailable},  // an address: both
	} {
		code, body := get(c.host)
		want := `{"ready":true}`
		if c.code != http.StatusOK {
			want = `{"ready":false}`
		}
		if code != c.code || body != want {
			t.Errorf("Host %s: /readyz %d %s, want %d %s", c.host, code, body, c.code, want)
		}
	}
	rec := httptest.NewRecorder()
	f.gw.Admin.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var admin struct {
		Ready     bool
		Frontends map[string]struct {
			Ready  bool
			Checks map[string]string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &admin); err != nil {
		t.Fatalf("admin /readyz: %v: %s", err, rec.Body)
	}
	a, b := admin.Frontends["a"], admin.Frontends["b"]
	if rec.Code != http.StatusServiceUnavailable || admin.Ready || !a.Ready || b.Ready ||
		a.Checks["idp"] != "ok" || !strings.Contains(b.Checks["idp"], "response_types_supported") {
		t.Errorf("admin /readyz: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(f.logs.String(), "frontend b: ") {
		t.Errorf("the access log does not say which frontend is not ready:\n%s", f.logs)
	}
}

// TestFrontendsAdmin: the admin API lists and revokes each frontend's
// sessions of a sub, and names the frontend.
func TestFrontendsAdmin(t *testing.T) {
	f := newTwoFrontends(t)
	user := agent{}
	f.login(user, "a")
	f.login(user, "b")
	admin := func(method string) string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, "/admin/sessions?sub=alice", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		f.gw.Admin.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	body := admin("GET")
	var list struct {
		Sessions []struct{ Frontend string } `json:"sessions"`
	}
	json.Unmarshal([]byte(body), &list)
	if len(list.Sessions) != 2 || list.Sessions[0].Frontend == list.Sessions[1].Frontend {
		t.Fatalf("admin list: %s", body)
	}
	if body := admin("DELETE"); !strings.Contains(body, `"revoked":2`) {
		t.Fatalf("admin revoke: %s", body)
	}
	for _, name := range []string{"a", "b"} {
		if s := f.session(user, name); s["loggedIn"] != false {
			t.Errorf("%s: session survived the admin revocation: %v", name, s)
		}
	}
	e := &env{t: t, op: f.ops["a"], logs: f.logs}
	e.scanLogs()
}

// TestFrontendsReload: SIGHUP reloads a frontend's routes like the top
// level's; a change to a frontend's OIDC client needs a restart and is
// named by its path.
func TestFrontendsReload(t *testing.T) {
	f := newTwoFrontends(t)
	user := agent{}
	f.login(user, "b")
	ctx := context.Background()
	clone := func() *config.Config {
		c := *f.gw.Config()
		c.Frontends = slices.Clone(c.Frontends)
		for i := range c.Frontends {
			c.Frontends[i].Routes = slices.Clone(c.Frontends[i].Routes)
		}
		return &c
	}
	next := clone()
	next.Frontends[1].Routes[0].Prefix = "/v2/"
	next.SetDefaults()
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := f.gw.Reload(ctx, next); err != nil {
		t.Fatalf("reloading b's routes: %v", err)
	}
	resp, _ := f.do(user, "GET", f.urls["b"]+"/v2/x", http.Header{csrf.HeaderName: {csrf.HeaderValue}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("b's reloaded route: %s", resp.Status)
	}
	<-f.subs["b"]
	hitsA := f.hits["a"].Load()
	f.do(user, "GET", f.urls["a"]+"/v2/x", http.Header{csrf.HeaderName: {csrf.HeaderValue}}) // a's SPA answers it
	if f.hits["a"].Load() != hitsA {
		t.Error("a proxies b's new route")
	}
	bad := clone()
	bad.Frontends[0].OIDC.ClientID = "other"
	if err := f.gw.Reload(ctx, bad); err == nil || !strings.Contains(err.Error(), "frontends[0].oidc.client_id cannot change without a restart") {
		t.Errorf("reloading a's client_id: %v", err)
	}
}

package gateway_test

import (
	"context"
	"encoding/json"
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
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/realop"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

// publicHost is the host name browsers use to reach moat.
type publicHost string

// realEnv is moat in front of the real oidc-provider and a recording
// upstream that checks every Bearer by introspection at the provider.
type realEnv struct {
	op       *realop.OP
	url      string
	cfg      *config.Config
	gw       *gateway.Gateway
	logs     *logtest.Buffer
	upstream *httptest.Server

	mu      sync.Mutex
	bearer  []string // Authorization values that reached the upstream
	subs    []string // their subjects, by introspection
	secrets []string // tokens and session IDs seen, which no log may hold
}

func (e *realEnv) noteSecret(vs ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range vs {
		if v != "" {
			e.secrets = append(e.secrets, v)
		}
	}
}

// newRealEnv starts the provider and moat. Each mod is a
// func(*config.Config), a func(*realEnv, *config.Config) (which sees the
// running provider), or a publicHost naming the host browsers use for
// moat (127.0.0.1 when none).
func newRealEnv(t *testing.T, opts realop.Options, mods ...any) *realEnv {
	t.Helper()
	realop.Require(t)
	e, ln := listenMoat(t, mods...)
	opts.RedirectURIs = []string{e.url + "/auth/callback"}
	opts.PostLogoutRedirectURIs = []string{e.url + "/logged-out", e.url + "/"}
	opts.BackchannelLogoutURI = e.url + "/auth/backchannel-logout"
	e.op = realop.Start(t, opts)
	introspect := func(at string) (string, bool) {
		sub, active, err := e.op.Introspect(at)
		return sub, err == nil && active
	}
	e.startMoat(t, ln, provider{e.op.Issuer, e.op.ClientID, e.op.ClientSecret, e.op.CAFile}, introspect, mods...)
	return e
}

// listenMoat opens moat's listener; the publicHost among mods names the
// host browsers use for it (127.0.0.1 when none).
func listenMoat(t *testing.T, mods ...any) (*realEnv, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := "127.0.0.1"
	for _, m := range mods {
		if h, ok := m.(publicHost); ok {
			host = string(h)
		}
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &realEnv{url: "http://" + net.JoinHostPort(host, port), logs: &logtest.Buffer{}}, ln
}

// provider is what moat's configuration needs of a real provider.
type provider struct{ issuer, clientID, clientSecret, caFile string }

// startMoat starts the recording upstream, whose introspect checks each
// Bearer at the provider (returning its subject), and moat on ln.
func (e *realEnv) startMoat(t *testing.T, ln net.Listener, p provider, introspect func(string) (string, bool), mods ...any) {
	t.Helper()
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authz := r.Header.Get("Authorization")
		at, _ := strings.CutPrefix(authz, "Bearer ")
		sub, active := introspect(at)
		if !active {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		e.noteSecret(at)
		e.mu.Lock()
		e.bearer = append(e.bearer, authz)
		e.subs = append(e.subs, sub)
		e.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"sub": sub, "path": r.URL.Path})
	}))
	t.Cleanup(e.upstream.Close)
	e.cfg = &config.Config{
		Listen:    ln.Addr().String(),
		PublicURL: e.url,
		OIDC: config.OIDC{
			Issuer: p.issuer, ClientID: p.clientID, ClientSecret: secret.String(p.clientSecret),
			Scopes:                []string{"openid", "profile", "email"},
			PostLogoutRedirectURL: e.url + "/logged-out",
			CAFile:                p.caFile, // "" unless realop.Options.TLS
		},
		Session: config.Session{Keys: []secret.String{secret.String(session.NewKey())}},
		Routes:  []config.Route{{Prefix: "/resource/api/", Upstream: e.upstream.URL + "/api/"}},
	}
	for _, m := range mods {
		switch m := m.(type) {
		case func(*config.Config):
			m(e.cfg)
		case func(*realEnv, *config.Config):
			m(e, e.cfg)
		case publicHost:
		default:
			t.Fatalf("newRealEnv: unknown mod %T", m)
		}
	}
	e.cfg.SetDefaults()
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	e.gw, err = gateway.New(context.Background(), e.cfg, log, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewHTTPServer(e.cfg, e.gw, log)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	e.noteSecret(p.clientSecret)
	t.Cleanup(func() {
		srv.Close()
		e.gw.Close()
		logs := e.logs.String()
		e.mu.Lock()
		for _, v := range e.secrets {
			if strings.Contains(logs, v) {
				t.Errorf("a token, secret or session ID reached moat's log: %.8s...", v)
			}
		}
		e.mu.Unlock()
		if t.Failed() { // moat's log without its access log lines
			for _, l := range strings.Split(e.logs.String(), "\n") {
				if !strings.Contains(l, `"msg":"request"`) {
					t.Log(l)
				}
			}
		}
	})
}

// login signs in through moat and the provider's pages and checks the
// browser lands on returnTo with a session.
func (e *realEnv) login(t *testing.T, ua *realop.UserAgent) {
	t.Helper()
	page, err := ua.Browse(context.Background(), e.url+"/auth/login?returnTo=/after-login")
	if err != nil {
		t.Fatal(err)
	}
	if page.URL.Path != "/after-login" {
		t.Fatalf("login ended at %s (%d): %.300s; hops %v", page.URL, page.Status, page.Body, ua.Hops)
	}
	if c := e.sessionCookie(ua); c == "" {
		t.Fatal("no session cookie after login")
	}
}

func (e *realEnv) sessionCookie(ua *realop.UserAgent) string {
	u, _ := url.Parse(e.url)
	for _, c := range ua.Client.Jar.Cookies(u) {
		if c.Name == session.CookieName {
			e.noteSecret(c.Value)
			return c.Value
		}
	}
	return ""
}

func (e *realEnv) api(t *testing.T, ua *realop.UserAgent, method, path string) *realop.Page {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	p, err := ua.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *realEnv) tokens(t *testing.T, ua *realop.UserAgent) session.Tokens {
	t.Helper()
	id, err := session.ParseID(e.sessionCookie(ua))
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
	if err != nil {
		t.Fatal(err)
	}
	e.noteSecret(l.Tokens.AccessToken, l.Tokens.RefreshToken, l.Tokens.IDToken)
	return l.Tokens
}

func (e *realEnv) expire(t *testing.T, ua *realop.UserAgent) {
	t.Helper()
	id, _ := session.ParseID(e.sessionCookie(ua))
	l, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
	if err != nil {
		t.Fatal(err)
	}
	l.Tokens.Expiry = time.Now().Add(-time.Second)
	if err := e.gw.Sessions.Save(context.Background(), l); err != nil {
		t.Fatal(err)
	}
}

// TestRealOPFullFlow runs moat's whole life cycle against the real,
// certified oidc-provider: login (PAR, PKCE, RFC 9207 iss), an API call
// whose Bearer the upstream verifies at the provider, a refresh, and
// RP-initiated logout back to the registered post_logout_redirect_uri, with
// the refresh token revoked at the provider.
func TestRealOPFullFlow(t *testing.T) {
	e := newRealEnv(t, realop.Options{RequirePAR: true})
	ua := e.op.UserAgent("alice")
	e.login(t, ua)

	cs := e.api(t, ua, http.MethodGet, "/auth/checksession")
	if !e.loggedIn(t, ua) || !strings.Contains(string(cs.Body), `"alice"`) {
		t.Fatalf("checksession: %d %s", cs.Status, cs.Body)
	}
	ui := e.api(t, ua, http.MethodGet, "/auth/userinfo")
	if ui.Status != http.StatusOK || !strings.Contains(string(ui.Body), "alice@example.test") {
		t.Fatalf("userinfo: %d %s", ui.Status, ui.Body)
	}

	first := e.tokens(t, ua)
	if first.RefreshToken == "" {
		t.Fatal("the provider issued no refresh token")
	}
	r := e.api(t, ua, http.MethodGet, "/resource/api/orders")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
		t.Fatalf("API call: %d %s", r.Status, r.Body)
	}
	if got := e.lastBearer(); got != "Bearer "+first.AccessToken {
		t.Fatalf("upstream got %.20q, want the session's access token", got)
	}

	e.expire(t, ua)
	r = e.api(t, ua, http.MethodGet, "/resource/api/orders")
	if r.Status != http.StatusOK {
		t.Fatalf("API call after expiry: %d %s", r.Status, r.Body)
	}
	second := e.tokens(t, ua)
	if second.AccessToken == first.AccessToken {
		t.Fatal("the access token was not refreshed")
	}
	if e.lastBearer() != "Bearer "+second.AccessToken {
		t.Fatal("the upstream did not get the refreshed access token")
	}

	e.logoutThroughProvider(t, ua)
	e.waitInactive(t, second.RefreshToken)
	// A new login must show the provider's sign-in form again.
	e.login(t, ua)
	if !hopsContain(ua.Hops, e.op.Issuer, "/interaction/") {
		t.Fatal("the provider session survived the logout: no sign-in page on the next login")
	}
}

// TestRealOPBackchannelLogout ends the user's session at the provider (not
// through moat); the provider's logout token must end moat's session.
func TestRealOPBackchannelLogout(t *testing.T) {
	e := newRealEnv(t, realop.Options{})
	ua := e.op.UserAgent("bob")
	e.login(t, ua)
	other := e.op.UserAgent("carol")
	e.login(t, other)

	page, err := ua.Browse(context.Background(), e.op.Issuer+"/session/end")
	if err != nil {
		t.Fatal(err)
	}
	if page.URL.Host != strings.TrimPrefix(e.op.Issuer, "http://") {
		t.Fatalf("end session ended at %s", page.URL)
	}
	if !e.loggedOutWithin(t, ua, 5*time.Second) {
		t.Fatalf("moat's session survived the back-channel logout; provider stderr: %s", e.op.Stderr())
	}
	if !e.loggedIn(t, other) {
		t.Fatal("another user's session ended too")
	}
	if strings.Contains(e.op.Stderr(), "backchannel.error") {
		t.Fatalf("provider reported: %s", e.op.Stderr())
	}
}

// logout logs ua out and fails t unless moat answers 200 and the real OP
// then reports the session's refresh token inactive.
func (e *realEnv) logout(t *testing.T, ua *realop.UserAgent) {
	t.Helper()
	rt := e.tokens(t, ua).RefreshToken
	if r := e.api(t, ua, http.MethodPost, "/auth/logout"); r.Status != http.StatusOK {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	e.waitInactive(t, rt)
}

// waitInactive fails t unless the real OP reports the refresh token rt
// inactive (RFC 7662) within 5 s: moat revokes it after logout without
// making the browser wait.
func (e *realEnv) waitInactive(t *testing.T, rt string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, active, err := e.op.Introspect(rt)
		if err == nil && !active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refresh token is still active at the provider (%v)\n%s", err, e.op.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logoutThroughProvider signs out through moat (POST /auth/logout) and
// follows the logout URL through the provider: it must end at the
// post-logout URI, with moat's session gone.
func (e *realEnv) logoutThroughProvider(t *testing.T, ua *realop.UserAgent) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/auth/logout", nil)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	out, err := ua.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ LogoutURL string }
	if err := json.Unmarshal(out.Body, &body); err != nil || out.Status != http.StatusOK {
		t.Fatalf("logout: %d %s", out.Status, out.Body)
	}
	page, err := ua.Browse(context.Background(), body.LogoutURL)
	if err != nil {
		t.Fatal(err)
	}
	if page.URL.String() != e.url+"/logged-out" {
		t.Fatalf("logout ended at %s (%d) %.300s, want the post_logout_redirect_uri", page.URL, page.Status, page.Body)
	}
	if e.loggedIn(t, ua) {
		t.Fatal("checksession says logged in after logout")
	}
}

// loggedOutWithin polls /auth/checksession until ua's session has ended
// (the provider's back-channel logout is asynchronous) or d has passed.
func (e *realEnv) loggedOutWithin(t *testing.T, ua *realop.UserAgent, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for e.loggedIn(t, ua) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// lastBearer is the Authorization header of the upstream's last request.
func (e *realEnv) lastBearer() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.bearer) == 0 {
		return ""
	}
	return e.bearer[len(e.bearer)-1]
}

// loggedIn asks /auth/checksession.
func (e *realEnv) loggedIn(t *testing.T, ua *realop.UserAgent) bool {
	t.Helper()
	cs := e.api(t, ua, http.MethodGet, "/auth/checksession")
	var body struct{ LoggedIn bool }
	if err := json.Unmarshal(cs.Body, &body); err != nil || cs.Status != http.StatusOK {
		t.Fatalf("checksession: %d %s", cs.Status, cs.Body)
	}
	return body.LoggedIn
}

func hopsContain(hops []*url.URL, origin, pathPart string) bool {
	for _, h := range hops {
		if strings.HasPrefix(h.String(), origin) && strings.Contains(h.Path, pathPart) {
			return true
		}
	}
	return false
}

// TestRealOPOfflineAccessNeedsPromptConsent shows the quirk docs/providers.md
// describes and its fix: oidc-provider (by default) grants offline_access,
// and so a refresh token, only when the request says prompt=consent, which
// oidc.auth_params adds to every login.
func TestRealOPOfflineAccessNeedsPromptConsent(t *testing.T) {
	for _, withPrompt := range []bool{false, true} {
		e := newRealEnv(t, realop.Options{StrictOfflineAccess: true}, func(c *config.Config) {
			c.OIDC.Scopes = []string{"openid", "offline_access", "email"}
			if withPrompt {
				c.OIDC.AuthParams = map[string]string{"prompt": "consent"}
			}
		})
		ua := e.op.UserAgent("erin")
		e.login(t, ua)
		if got := e.tokens(t, ua).RefreshToken != ""; got != withPrompt {
			t.Fatalf("auth_params prompt=consent %v: refresh token issued %v", withPrompt, got)
		}
		if withPrompt {
			e.expire(t, ua)
			if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK {
				t.Fatalf("API call needing a refresh: %d %s", r.Status, r.Body)
			}
		}
	}
}

// TestRealOPScopeRules: oidc-provider grants fewer scopes than moat asks
// for (offline_access needs prompt=consent) and says so in the token
// response's scope; a scope rule is judged on what was granted, not on
// what was asked.
func TestRealOPScopeRules(t *testing.T) {
	e := newRealEnv(t, realop.Options{StrictOfflineAccess: true}, func(c *config.Config) {
		c.OIDC.Scopes = []string{"openid", "offline_access", "email"}
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/mail/", Upstream: e0(c) + "/mail/", Require: []config.Requirement{{Scope: []string{"email", "openid"}}}},
			config.Route{Prefix: "/resource/offline/", Upstream: e0(c) + "/offline/", Require: []config.Requirement{{Scope: []string{"offline_access"}}}},
		)
	})
	ua := e.op.UserAgent("erin")
	e.login(t, ua)
	if got := e.tokens(t, ua).Scope; got != "openid email" {
		t.Fatalf("session scope = %q, want the granted %q", got, "openid email")
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/mail/x"); r.Status != http.StatusOK {
		t.Fatalf("route needing granted scopes: %d %s", r.Status, r.Body)
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/offline/x"); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), `"forbidden"`) {
		t.Fatalf("route needing a scope asked for but not granted: %d %s, want 403 forbidden", r.Status, r.Body)
	}
}

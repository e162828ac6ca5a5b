package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

func TestRPInitiatedLogout(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.OIDC.PostLogoutRedirectURL = c.PublicURL + "/bye" })
	b := e.browser()
	b.login("/")
	c := b.sessionCookie()
	idToken := func() string {
		id, _ := session.ParseID(c.Value)
		l, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
		if err != nil {
			t.Fatal(err)
		}
		return l.Tokens.IDToken
	}()
	r := b.get("/auth/logout") // top-level navigation form
	loc, err := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("logout: %s %v", r.Status, err)
	}
	q := loc.Query()
	if loc.Path != "/end_session" || q.Get("id_token_hint") != idToken || q.Get("client_id") != e.op.ClientID ||
		q.Get("post_logout_redirect_uri") != e.url+"/bye" || q.Has("state") {
		t.Errorf("end-session URL = %s", loc)
	}
	// The hint is a genuine ID token of this client.
	if _, err := e.gw.IdP.VerifyLogoutToken(context.Background(), idToken); err == nil {
		t.Error("an ID token passed as a logout token")
	}
	if got := b.get("/auth/checksession").json(t); got["loggedIn"] != false {
		t.Errorf("after logout: %v", got)
	}
}

func TestLogoutWithoutEndSessionOrWorkingRevocation(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.FrontendURL = "http://localhost:5173/" },
		func(b *oidctest.Behavior) { b.NoEndSession = true; b.RevokeStatus = http.StatusServiceUnavailable })
	b := e.browser()
	b.login("/")
	r := b.api("POST", "/auth/logout")
	if r.StatusCode != http.StatusOK || r.json(t)["logoutUrl"] != "http://localhost:5173/" {
		t.Fatalf("logout: %s %s", r.Status, r.body)
	}
	if got := b.get("/auth/checksession").json(t); got["loggedIn"] != false {
		t.Errorf("a failing revocation kept the session: %v", got)
	}
	e.eventually("revocation is attempted", func() bool {
		for _, req := range e.op.Requests() {
			if req.Path == "/revoke" {
				return true
			}
		}
		return false
	})
}

// postLogoutToken delivers a back-channel logout token as the OP would.
func postLogoutToken(t *testing.T, e *env, token string) *http.Response {
	t.Helper()
	resp, err := http.PostForm(e.url+"/auth/backchannel-logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func loggedIn(t *testing.T, b *browser) bool {
	t.Helper()
	return b.get("/auth/checksession").json(t)["loggedIn"] == true
}

func TestBackchannelLogout(t *testing.T) {
	e := newEnv(t)
	e.op.AddUser(oidctest.User{Subject: "bob", Claims: map[string]any{"name": "Bob"}})
	alice1, alice2, bob := e.browser(), e.browser(), e.browser()
	alice1.login("/")
	sid1 := e.op.SessionID("alice")
	alice2.login("/")
	r := bob.get("/auth/login")
	u, _ := url.Parse(r.Header.Get("Location"))
	q := u.Query()
	q.Set("login_hint", "bob")
	u.RawQuery = q.Encode()
	r = bob.get(u.String())
	bob.get(r.Header.Get("Location"))
	if !loggedIn(t, alice1) || !loggedIn(t, alice2) || !loggedIn(t, bob) {
		t.Fatal("setup: not all logged in")
	}

	short := func(b *browser) string {
		id, err := session.ParseID(b.sessionCookie().Value)
		if err != nil {
			t.Fatal(err)
		}
		return id.Key().Short()
	}
	alice1Session, alice2Session := short(alice1), short(alice2)

	// sid: exactly that session.
	resp := postLogoutToken(t, e, e.op.LogoutToken("", sid1, nil))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("sid logout: %s %v", resp.Status, resp.Header)
	}
	if loggedIn(t, alice1) || !loggedIn(t, alice2) || !loggedIn(t, bob) {
		t.Fatal("a sid logout ended the wrong sessions")
	}
	// sub only: every session of that user, nobody else's.
	if resp := postLogoutToken(t, e, e.op.LogoutToken("alice", "", nil)); resp.StatusCode != http.StatusOK {
		t.Fatalf("sub logout: %s", resp.Status)
	}
	if loggedIn(t, alice2) || !loggedIn(t, bob) {
		t.Fatal("a sub logout ended the wrong sessions")
	}
	// The audit log names each ended session by its hash.
	var audits []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == "backchannel_logout" {
			audits = append(audits, m)
		}
	}
	if len(audits) != 2 || fmt.Sprint(audits[0]["session"]) != "["+alice1Session+"]" ||
		fmt.Sprint(audits[1]["session"]) != "["+alice2Session+"]" || audits[1]["sub"] != "alice" {
		t.Errorf("back-channel audit lines: %v; want sessions [%s] then [%s]", audits, alice1Session, alice2Session)
	}
	// An already-ended session counts as success (§2.7).
	if resp := postLogoutToken(t, e, e.op.LogoutToken("alice", "", nil)); resp.StatusCode != http.StatusOK {
		t.Errorf("repeat for an ended session: %s", resp.Status)
	}
}

func TestBackchannelLogoutRejections(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	foreign := oidctest.NewKey(e.op.CurrentKeyID())
	idToken := func() string {
		id, _ := session.ParseID(b.sessionCookie().Value)
		l, _ := e.gw.Sessions.LoadKey(context.Background(), id.Key())
		return l.Tokens.IDToken
	}()
	replayed := e.op.LogoutToken("bob", "", nil)
	if resp := postLogoutToken(t, e, replayed); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use: %s", resp.Status)
	}
	withClaims := func(f func(map[string]any)) string { return e.op.LogoutToken("alice", "", f) }
	claimsOf := func(f func(map[string]any)) map[string]any {
		c := map[string]any{"iss": e.op.Issuer, "aud": e.op.ClientID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
			"jti": "j-" + fmt.Sprint(time.Now().UnixNano()), "sub": "alice",
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
		if f != nil {
			f(c)
		}
		return c
	}
	cases := map[string]string{
		"bad signature":  oidctest.SignWith(foreign, "logout+jwt", claimsOf(nil)),
		"unknown key":    oidctest.SignWith(oidctest.NewKey("evil"), "logout+jwt", claimsOf(nil)),
		"alg none":       oidctest.SignNone(claimsOf(nil)),
		"HS256":          oidctest.SignHS256(e.op.ClientSecret, claimsOf(nil)),
		"missing events": withClaims(func(c map[string]any) { delete(c, "events") }),
		"wrong event":    withClaims(func(c map[string]any) { c["events"] = map[string]any{"http://example.com/other": map[string]any{}} }),
		"event not an object": withClaims(func(c map[string]any) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": "yes"}
		}),
		"nonce present":       withClaims(func(c map[string]any) { c["nonce"] = "n" }),
		"wrong aud":           withClaims(func(c map[string]any) { c["aud"] = "other-client" }),
		"untrusted extra aud": withClaims(func(c map[string]any) { c["aud"] = []string{e.op.ClientID, "other"} }),
		"wrong iss":           withClaims(func(c map[string]any) { c["iss"] = "https://evil.example" }),
		"expired":             withClaims(func(c map[string]any) { c["exp"] = time.Now().Add(-5 * time.Minute).Unix() }),
		"iat a day old":       withClaims(func(c map[string]any) { c["iat"] = time.Now().Add(-24 * time.Hour).Unix() }),
		"no sub nor sid":      withClaims(func(c map[string]any) { delete(c, "sub") }),
		"no jti":              withClaims(func(c map[string]any) { delete(c, "jti") }),
		"typ JWT":             e.op.SignWithCurrentKey(claimsOf(nil)),
		"an ID token":         idToken,
		"replayed jti":        replayed,
		"garbage":             "not.a.jwt",
		"empty":               "",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			resp := postLogoutToken(t, e, tok)
			// "unknown key": the JWKS fetched at login, less than 10 s
			// ago, lacks its kid; not refetched, and a 400 (§2.8), not an
			// outage.
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %s, want 400", resp.Status)
			}
			if !loggedIn(t, b) {
				t.Fatal("a rejected logout token ended the session")
			}
		})
	}
	resp, _ := http.Get(e.url + "/auth/backchannel-logout")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %s", resp.Status)
	}
}

func TestIdleAndAbsoluteTimeouts(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Session.IdleTimeout = config.Duration(10 * time.Minute)
		c.Session.AbsoluteTimeout = config.Duration(30 * time.Minute)
	})
	b := e.browser()
	b.login("/")
	// Activity every 6 minutes keeps the session past the idle timeout...
	for range 4 {
		e.clock.Advance(6 * time.Minute)
		if !loggedIn(t, b) {
			t.Fatalf("an active session ended at +%v", e.clock.off)
		}
	}
	// ...but not past the absolute one (login + 30 min).
	e.clock.Advance(7 * time.Minute)
	if loggedIn(t, b) {
		t.Fatal("the session outlived its absolute timeout")
	}
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("API after expiry: %s", r.Status)
	}

	b2 := e.browser()
	b2.login("/")
	exp := b2.get("/auth/checksession").json(t)["expiresAt"].(string)
	if at, err := time.Parse(time.RFC3339, exp); err != nil || at.Sub(e.clock.Now()) > 10*time.Minute+time.Second {
		t.Errorf("expiresAt = %q, want the idle deadline", exp)
	}
	e.clock.Advance(11 * time.Minute)
	if loggedIn(t, b2) {
		t.Fatal("an idle session did not end")
	}
	if r := b2.api("GET", "/resource/api/x"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("API after idle expiry: %s", r.Status)
	}
}

func TestSessionNeverOutlivesTheRefreshToken(t *testing.T) {
	e := newEnv(t)
	e.op.Set(func(b *oidctest.Behavior) { b.RefreshExpiresIn = 20 * time.Minute })
	b := e.browser()
	b.login("/")
	exp, _ := time.Parse(time.RFC3339, b.get("/auth/checksession").json(t)["expiresAt"].(string))
	if d := exp.Sub(e.clock.Now()); d > 20*time.Minute+time.Second {
		t.Errorf("session ends in %v, after its refresh token", d)
	}
}

func TestAbandonedLoginExpires(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.get("/auth/login")
	r = b.get(r.Header.Get("Location"))
	e.clock.Advance(11 * time.Minute)
	if r := b.get(r.Header.Get("Location")); r.StatusCode != http.StatusBadRequest || b.sessionCookie() != nil {
		t.Errorf("callback after the login timeout: %s", r.Status)
	}
}

func TestReauthenticationPassthrough(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.OIDC.ACRValues = []string{"urn:mfa", "urn:pwd"} })
	authorize := func(b *browser, query string) url.Values {
		r := b.get("/auth/login?" + query)
		if r.StatusCode != http.StatusFound {
			t.Fatalf("login?%s: %s", query, r.Status)
		}
		u, _ := url.Parse(r.Header.Get("Location"))
		return u.Query()
	}
	q := authorize(e.browser(), "prompt=login&max_age=60&acr_values=urn:mfa")
	if q.Get("prompt") != "login" || q.Get("max_age") != "60" || q.Get("acr_values") != "urn:mfa" {
		t.Errorf("authorization request = %v", q)
	}
	for _, bad := range []string{"prompt=consent", "max_age=-1", "max_age=x", "acr_values=urn:other", "acr_values=urn:mfa+urn:evil"} {
		if r := e.browser().get("/auth/login?" + bad); r.StatusCode != http.StatusBadRequest {
			t.Errorf("login?%s: %s, want 400", bad, r.Status)
		}
	}

	cases := []struct {
		name   string
		query  string
		mutate func(map[string]any)
		ok     bool
	}{
		{"fresh auth_time", "max_age=60", nil, true},
		{"stale auth_time", "max_age=300", func(c map[string]any) { c["auth_time"] = time.Now().Add(-time.Hour).Unix() }, false},
		{"missing auth_time", "max_age=300", func(c map[string]any) { delete(c, "auth_time") }, false},
		{"acr granted", "acr_values=urn:mfa", func(c map[string]any) { c["acr"] = "urn:mfa" }, true},
		{"acr not granted", "acr_values=urn:mfa", func(c map[string]any) { c["acr"] = "urn:pwd" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.op.Set(func(b *oidctest.Behavior) { b.MutateIDToken = tc.mutate })
			b := e.browser()
			r := b.get("/auth/login?" + tc.query)
			r = b.get(r.Header.Get("Location"))
			r = b.get(r.Header.Get("Location"))
			if got := b.sessionCookie() != nil; got != tc.ok {
				t.Fatalf("logged in = %v, want %v (%s)", got, tc.ok, r.Status)
			}
			if tc.ok {
				user := b.get("/auth/checksession").json(t)["user"].(map[string]any)
				if user["auth_time"] == nil || (strings.Contains(tc.query, "acr") && user["acr"] != "urn:mfa") {
					t.Errorf("checksession user = %v", user)
				}
			}
		})
	}

	e.op.Set(func(b *oidctest.Behavior) { b.MutateIDToken = nil; b.AuthorizeError = "login_required" })
	b := e.browser()
	r := b.get("/auth/login?prompt=none&returnTo=/app")
	r = b.get(r.Header.Get("Location"))
	r = b.get(r.Header.Get("Location"))
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || loc != "/app?login_error=login_required" {
		t.Errorf("prompt=none failure: %s %q", r.Status, loc)
	}
}

// Without admin.token the session API answers that it is disabled and how
// to enable it, not that a token is required: none would be accepted.
func TestAdminAPIDisabledSaysHowToEnable(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Admin.Listen = "127.0.0.1:0" })
	admin := httptest.NewServer(e.gw.Admin)
	defer admin.Close()
	for _, auth := range []string{"", "Bearer whatever-0123456789-0123456789-0123"} {
		req, _ := http.NewRequest("GET", admin.URL+"/admin/sessions?sub=alice", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || body["error"] != "disabled" ||
			!strings.Contains(body["message"], "admin.token") || !strings.Contains(body["message"], "moat keygen") {
			t.Errorf("auth %q: %s %v", auth, resp.Status, body)
		}
	}
	// /metrics stays served without a token.
	if resp, err := http.Get(admin.URL + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %v %v", resp, err)
	}
}

func TestAdminAPI(t *testing.T) {
	const token = "admin-token-0123456789-0123456789-abcdef"
	e := newEnv(t, func(c *config.Config) { c.Admin.Listen = "127.0.0.1:0"; c.Admin.Token = secret.String(token) })
	admin := httptest.NewServer(e.gw.Admin)
	defer admin.Close()
	call := func(method, path, tok string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest(method, admin.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body := map[string]any{}
		json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	b1, b2 := e.browser(), e.browser()
	b1.login("/")
	b2.login("/")
	for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
		if resp, _ := call("GET", "/admin/sessions?sub=alice", tok); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: %s", tok, resp.Status)
		}
	}
	resp, body := call("GET", "/admin/sessions?sub=alice", token)
	list, _ := body["sessions"].([]any)
	if resp.StatusCode != http.StatusOK || len(list) != 2 {
		t.Fatalf("list: %s %v", resp.Status, body)
	}
	first := list[0].(map[string]any)
	if first["ip"] != "127.0.0.1" || first["userAgent"] == "" || first["created"] == nil || first["lastSeen"] == nil {
		t.Errorf("session view = %v", first)
	}
	raw, _ := json.Marshal(body)
	for _, tok := range e.op.IssuedTokens() {
		if strings.Contains(string(raw), tok) {
			t.Error("the admin API shows a token")
		}
	}
	id1, _ := session.ParseID(b1.sessionCookie().Value)
	if resp, _ := call("DELETE", "/admin/sessions/"+string(id1.Key()), token); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke one: %s", resp.Status)
	}
	if loggedIn(t, b1) || !loggedIn(t, b2) {
		t.Fatal("revoke one ended the wrong session")
	}
	if resp, _ := call("DELETE", "/admin/sessions/"+string(id1.Key()), token); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoke a gone session: %s", resp.Status)
	}
	if resp, body := call("DELETE", "/admin/sessions?sub=alice", token); resp.StatusCode != http.StatusOK || body["revoked"] != float64(1) {
		t.Fatalf("revoke all: %s %v", resp.Status, body)
	}
	if loggedIn(t, b2) {
		t.Fatal("revoke all left a session")
	}
	e.eventually("both refresh tokens are revoked", func() bool {
		n := 0
		for _, r := range e.op.Requests() {
			if r.Path == "/revoke" {
				n++
			}
		}
		return n == 2
	})
	if logs := e.logs.String(); !strings.Contains(logs, `"event":"admin_revoke"`) || !strings.Contains(logs, `"event":"login"`) {
		t.Error("audit log lines missing")
	}
}

func TestCrossSiteLogoutLinkDeletesNothing(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	// A cross-site link arrives without the SameSite=Strict cookie.
	stranger := e.browser()
	r := stranger.get("/auth/logout", "Sec-Fetch-Site", "cross-site")
	for _, c := range r.Cookies() {
		if c.Name == session.CookieName {
			t.Errorf("a cookie-less GET /auth/logout answered Set-Cookie %s (a cross-site link could delete the cookie)", c.Name)
		}
	}
	if !loggedIn(t, b) {
		t.Error("the session ended")
	}
	if got := r.Header.Get("Cross-Origin-Opener-Policy"); got != "same-origin" {
		t.Errorf("/auth responses: Cross-Origin-Opener-Policy %q", got)
	}
}

func TestPushedAuthorizationRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		par, req bool
		mode     string
		pushed   bool
		fail     bool
	}{
		{name: "auto uses an offered endpoint", par: true, mode: "auto", pushed: true},
		{name: "auto without an endpoint", mode: "auto"},
		{name: "off", par: true, mode: "off"},
		{name: "required by the IdP", req: true, mode: "auto", pushed: true},
		{name: "required by config, not offered", mode: "required", fail: true},
		{name: "required by the IdP, off in config", req: true, mode: "off", fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.OIDC.PAR = tc.mode },
				func(b *oidctest.Behavior) { b.PAR, b.RequirePAR = tc.par, tc.req })
			b := e.browser()
			r := b.get("/auth/login")
			if tc.fail {
				if r.StatusCode < 400 {
					t.Fatalf("login: %s, want a refusal", r.Status)
				}
				return
			}
			u, _ := url.Parse(r.Header.Get("Location"))
			q := u.Query()
			if tc.pushed {
				if len(q) != 2 || q.Get("client_id") != e.op.ClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
					t.Fatalf("the browser's authorization URL = %s, want only client_id and request_uri", u)
				}
				var auth string
				for _, req := range e.op.Requests() {
					if req.Path == "/par" {
						auth = req.ClientAuth
						if req.Form.Get("code_challenge_method") != "S256" || req.Form.Get("state") == "" || req.Form.Get("nonce") == "" {
							t.Errorf("pushed parameters = %v", req.Form)
						}
					}
				}
				if auth == "" {
					t.Error("the pushed request was not client-authenticated")
				}
			} else if q.Get("state") == "" || q.Get("request_uri") != "" {
				t.Fatalf("authorization URL = %s", u)
			}
			first := r.Header.Get("Location")
			r = b.get(first)
			if r = b.get(r.Header.Get("Location")); r.StatusCode != http.StatusFound || !loggedIn(t, b) {
				t.Fatalf("login through PAR: %s", r.Status)
			}
			if tc.pushed {
				if r := b.get(first); r.StatusCode != http.StatusBadRequest {
					t.Errorf("a request_uri used twice: %s", r.Status)
				}
			}
		})
	}
}

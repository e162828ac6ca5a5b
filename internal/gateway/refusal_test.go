package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// A refresh the IdP refuses with a 4xx about the grant ends the session,
// whatever error code the provider uses: 401 JSON, the cookie cleared, an
// audit line, and the refresh token never presented again.
func TestRefreshRefusedWithA4xxEndsTheSession(t *testing.T) {
	cases := []struct {
		status int
		code   string
	}{
		{400, "invalid_grant"}, {400, "invalid_request"}, {400, "unsupported_grant_type"},
		{400, "invalid_scope"}, {403, "access_denied"}, {400, ""}, {401, ""},
	}
	for _, c := range cases {
		t.Run(http.StatusText(c.status)+" "+c.code, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser()
			b.login("/")
			cookie := b.sessionCookie()
			e.expireAccessToken(cookie)
			e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshErrorStatus, bh.RefreshErrorCode = c.status, c.code })
			r := b.api("GET", "/resource/api/recipe")
			if r.StatusCode != http.StatusUnauthorized || r.json(t)["error"] != "unauthenticated" {
				t.Fatalf("%s %s, want 401 unauthenticated", r.Status, r.body)
			}
			cleared := false
			for _, ck := range r.Cookies() {
				cleared = cleared || ck.Name == session.CookieName && ck.MaxAge < 0
			}
			if !cleared {
				t.Error("the session cookie was not cleared")
			}
			if l := e.logs.String(); !strings.Contains(l, `"event":"session_ended"`) || !strings.Contains(l, `"reason":"refresh token refused"`) {
				t.Errorf("no session_ended audit line: %s", l)
			}
			again := e.browser()
			again.setCookie(cookie)
			for range 3 {
				if r := again.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusUnauthorized {
					t.Fatalf("the refused session answered %s", r.Status)
				}
			}
			if n := e.op.Grants("refresh_token"); n != 1 {
				t.Errorf("the refused refresh token was presented %d times, want 1", n)
			}
			if len(e.upstream.requests()) != 0 {
				t.Error("the upstream was called")
			}
		})
	}
}

// invalid_client and unauthorized_client are moat's deployment problem: the
// session is kept, the answer is 503, the metric counts it, /readyz reports
// it until the token endpoint accepts moat again. 5xx and rate limiting are
// outages: 503 and the session kept.
func TestRefreshRefusedForTheClientOrTransientKeepsTheSession(t *testing.T) {
	cases := []struct {
		status   int
		code     string
		rejected bool
	}{
		{401, "invalid_client", true}, {400, "unauthorized_client", true},
		{500, "", false}, {503, "temporarily_unavailable", false}, {429, "", false}, {502, "", false},
	}
	for _, c := range cases {
		t.Run(http.StatusText(c.status)+" "+c.code, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser()
			b.login("/")
			e.expireAccessToken(b.sessionCookie())
			e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshErrorStatus, bh.RefreshErrorCode = c.status, c.code })
			for range 3 {
				if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
					t.Fatalf("%s %s, want 503 unavailable", r.Status, r.body)
				}
			}
			if got := b.get("/auth/checksession").json(t); got["loggedIn"] != true {
				t.Fatalf("session lost: %v", got)
			}
			if r := b.get("/readyz"); r.StatusCode != http.StatusOK || string(r.body) != "{\"ready\":true}\n" {
				t.Errorf("public readyz = %s %q, want only {\"ready\":true}", r.Status, r.body)
			}
			_, checks := adminReadyz(t, e.gw)
			idpClient := checks["idp_client"]
			metric := e.metricValue("moat_idp_client_rejected_total")
			if c.rejected {
				if !strings.Contains(idpClient, c.code) {
					t.Errorf("readyz idp_client = %v, want the rejection", idpClient)
				}
				if metric != 3 {
					t.Errorf("moat_idp_client_rejected_total = %v, want 3", metric)
				}
				if n := strings.Count(e.logs.String(), "the identity provider refuses this client"); n != 1 {
					t.Errorf("%d error lines for 3 rejections, want 1", n)
				}
			} else if idpClient != "ok" || metric != 0 {
				t.Errorf("readyz idp_client = %v, metric %v for an outage", idpClient, metric)
			}
			e.op.Set(func(bh *oidctest.Behavior) { bh.RefreshErrorStatus = 0 })
			if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusOK {
				t.Fatalf("after recovery: %s %s", r.Status, r.body)
			}
			e.clock.Advance(time.Second) // past the cached /readyz answer
			if _, checks := adminReadyz(t, e.gw); checks["idp_client"] != "ok" {
				t.Errorf("readyz idp_client after recovery = %v", checks["idp_client"])
			}
		})
	}
}

// metricValue sums a counter's samples from moat's registry.
func (e *env) metricValue(name string) float64 {
	e.t.Helper()
	mfs, err := e.gw.Metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// A refresh the token endpoint answered is never thrown away: with the
// JWKS unreachable at a key rotation, the new access and refresh tokens are
// stored and used, the claims stay, and the refresh after that presents the
// rotated refresh token (the OP's reuse detection would otherwise revoke
// the grant and log the user out).
func TestRefreshWithJWKSDownKeepsTheRotatedTokens(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	c := b.sessionCookie()
	e.op.RotateKey()
	e.op.Set(func(bh *oidctest.Behavior) { bh.Garbage = "/jwks" })
	for i := range 2 {
		e.expireAccessToken(c)
		if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusOK || r.json(t)["sub"] != "alice" {
			t.Fatalf("refresh %d with the JWKS down: %s %s", i+1, r.Status, r.body)
		}
	}
	if cs := b.get("/auth/checksession").json(t); cs["loggedIn"] != true || cs["user"].(map[string]any)["email"] != "alice@example.com" {
		t.Errorf("claims after the refreshes: %v", cs)
	}
	if n := e.op.Grants("refresh_token"); n != 2 {
		t.Errorf("refresh grants = %d, want 2", n)
	}
	if _, ok := e.op.ValidAccessToken(e.accessToken(c)); !ok {
		t.Error("the grant was revoked: a spent refresh token was presented")
	}
	if !strings.Contains(e.logs.String(), "the refreshed ID token failed validation") {
		t.Error("no warning about the unvalidated ID token")
	}
}

// A refreshed ID token that names another subject ends the session and
// revokes the new refresh token.
func TestRefreshWithAnotherSubjectEndsTheSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	e.expireAccessToken(b.sessionCookie())
	e.op.Set(func(bh *oidctest.Behavior) { bh.MutateIDToken = func(c map[string]any) { c["sub"] = "mallory" } })
	if r := b.api("GET", "/resource/api/recipe"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s %s, want 401", r.Status, r.body)
	}
	if got := b.get("/auth/checksession").json(t); got["loggedIn"] != false {
		t.Errorf("session kept: %v", got)
	}
	revoked := false
	for _, r := range e.op.Requests() {
		revoked = revoked || r.Path == "/revoke" && strings.HasPrefix(r.Form.Get("token"), "rt-")
	}
	if !revoked {
		t.Error("the new refresh token was not revoked")
	}
	if l := e.logs.String(); !strings.Contains(l, `"event":"session_ended"`) || !strings.Contains(l, "another subject") {
		t.Errorf("no session_ended audit line: %s", l)
	}
	if len(e.upstream.requests()) != 0 {
		t.Error("the upstream was called")
	}
}

// /auth/userinfo: the IdP refusing the access token (401, 403) is a 403
// token_not_accepted that keeps the session; an IdP failure is a 503.
func TestUserInfoRefusedByTheIdP(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/")
	for _, tc := range []struct {
		idp, want int
		code      string
	}{{401, 403, "token_not_accepted"}, {403, 403, "token_not_accepted"}, {500, 503, "unavailable"}, {0, 200, ""}} {
		e.op.Set(func(bh *oidctest.Behavior) { bh.UserInfoStatus = tc.idp })
		r := b.api("GET", "/auth/userinfo")
		if r.StatusCode != tc.want || tc.code != "" && r.json(t)["error"] != tc.code {
			t.Errorf("IdP %d: %s %s, want %d %s", tc.idp, r.Status, r.body, tc.want, tc.code)
		}
		if got := b.get("/auth/checksession").json(t); got["loggedIn"] != true {
			t.Fatalf("IdP %d ended the session", tc.idp)
		}
	}
}

// labeledMetric is a counter's value for one label value.
func (e *env) labeledMetric(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.gw.Metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A callback that fails for an outage is audited too, reason unavailable.
func TestCallbackOutageIsAudited(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.get("/auth/login")
	r = b.get(r.Header.Get("Location"))
	e.op.Set(func(bh *oidctest.Behavior) { bh.TokenStatus = http.StatusInternalServerError })
	if r := b.get(r.Header.Get("Location")); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("callback: %s", r.Status)
	}
	if l := e.logs.String(); !strings.Contains(l, `"event":"login_failed","reason":"unavailable"`) {
		t.Errorf("no login_failed audit line: %s", l)
	}
}

// `moat check` (Gateway.Check), the admin listener's /readyz and the log
// name the exact issuer to set when oidc.issuer differs from the discovery
// document by a trailing slash; the public /readyz says only that moat is
// not ready.
func TestIssuerWithTrailingSlashIsExplained(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.OIDC.Issuer += "/"; c.Admin.Listen = "127.0.0.1:0" })
	want := `set oidc.issuer to exactly "` + e.op.Issuer + `"`
	err := e.gw.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "unavailable") {
		t.Errorf("Check: %v, want %q", err, want)
	}
	r := e.browser().get("/readyz")
	if r.StatusCode != http.StatusServiceUnavailable || string(r.body) != "{\"ready\":false}\n" {
		t.Errorf("public readyz: %s %q, want only {\"ready\":false}", r.Status, r.body)
	}
	adm := httptest.NewServer(e.gw.Admin)
	defer adm.Close()
	resp, err := http.Get(adm.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Checks map[string]string }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body.Checks["idp"], want) {
		t.Errorf("admin readyz: %s %v", resp.Status, body.Checks)
	}
	if l := e.logs.String(); !strings.Contains(l, `set oidc.issuer to exactly \"`+e.op.Issuer+`\"`) {
		t.Error("the startup log does not say which issuer to set")
	}
}

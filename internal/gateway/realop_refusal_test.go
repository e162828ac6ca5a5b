package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/realop"
	"github.com/moat-bff/moat/internal/session"
)

// The real oidc-provider's refusals land in the right class (issue 13.1):
// a refresh token it no longer honours ends the session with a 401; a
// client secret it refuses keeps logins at 503 and shows in /readyz.
func TestRealOPRefusals(t *testing.T) {
	t.Run("dead refresh token ends the session", func(t *testing.T) {
		e := newRealEnv(t, realop.Options{})
		ua := e.op.UserAgent("alice")
		e.login(t, ua)
		tok := e.tokens(t, ua)
		if err := e.gw.IdP.Revoke(context.Background(), tok.RefreshToken, "refresh_token"); err != nil {
			t.Fatal(err)
		}
		e.expire(t, ua)
		if r := e.api(t, ua, http.MethodGet, "/resource/api/orders"); r.Status != http.StatusUnauthorized {
			t.Fatalf("API with a revoked refresh token: %d %s", r.Status, r.Body)
		}
		if e.loggedIn(t, ua) {
			t.Fatal("the session survived the provider's refusal")
		}
		if !strings.Contains(e.logs.String(), `"event":"session_ended"`) {
			t.Error("no session_ended audit line")
		}
	})
	t.Run("wrong client secret is a reported 503", func(t *testing.T) {
		e := newRealEnv(t, realop.Options{}, func(c *config.Config) {
			c.OIDC.ClientSecret = "not-the-secret"
			c.OIDC.PAR = "off" // so the token endpoint, not PAR, refuses the client
		})
		ua := e.op.UserAgent("alice")
		page, err := ua.Browse(context.Background(), e.url+"/auth/login?returnTo=/after-login")
		if err != nil {
			t.Fatal(err)
		}
		if page.Status != http.StatusServiceUnavailable || page.URL.Path != "/auth/callback" {
			t.Fatalf("login with a refused client: %d at %s", page.Status, page.URL)
		}
		if _, checks := adminReadyz(t, e.gw); !strings.Contains(checks["idp_client"], "invalid_client") {
			t.Errorf("admin readyz idp_client = %q", checks["idp_client"])
		}
		if !strings.Contains(e.logs.String(), "the identity provider refuses this client") {
			t.Error("no error line about the refused client")
		}
	})
}

// A second login in the same browser ends the first session and revokes
// its refresh token at the real provider (issue 13.16; the browser-side
// SameSite behaviour is TestReloginEndsTheOldSessionInChromium's).
func TestRealOPReloginRevokesTheOldRefreshToken(t *testing.T) {
	e := newRealEnv(t, realop.Options{})
	ua := e.op.UserAgent("alice")
	e.login(t, ua)
	oldCookie := e.sessionCookie(ua)
	old := e.tokens(t, ua)
	e.login(t, ua)
	if e.sessionCookie(ua) == oldCookie {
		t.Fatal("the session ID did not change")
	}
	id, _ := session.ParseID(oldCookie)
	if _, err := e.gw.Sessions.LoadKey(context.Background(), id.Key()); err == nil {
		t.Error("the old session is still stored")
	}
	e.waitInactive(t, old.RefreshToken)
	if !e.loggedIn(t, ua) {
		t.Error("the new session does not work")
	}
}

package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/browsertest"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// TestReloginEndsTheOldSessionInChromium: with moat on http://localhost
// the OP on http://127.0.0.1 is another site, as IdPs are. The session
// cookie is SameSite=Strict, so Chromium does not send it on the OP's
// redirect to /auth/callback. Logging in again must still end the session
// held before (recorded at /auth/login, a same-site navigation) and revoke
// its refresh token. With moat on 127.0.0.1 (same site as the OP, the
// cookie reaches the callback) the outcome must be the same.
func TestReloginEndsTheOldSessionInChromium(t *testing.T) {
	browsertest.Require(t)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			var publicURL string
			e := newEnv(t, func(c *config.Config) {
				publicURL = strings.Replace(c.PublicURL, "127.0.0.1", host, 1)
				c.PublicURL = publicURL
			}, func(p *oidctest.Provider) {
				p.RedirectURI = publicURL + "/auth/callback"
				p.Set(func(b *oidctest.Behavior) { b.ConsentForm = true })
			})
			tab := browsertest.New(t, 60*time.Second)

			login := func() *network.Cookie {
				t.Helper()
				if err := chromedp.Do(tab, chromedp.Navigate(publicURL+"/auth/login?returnTo=/auth/checksession")); err != nil {
					t.Fatal(err)
				}
				// The OP's page submits its form by script: wait for the redirects.
				var loc string
				for deadline := time.Now().Add(10 * time.Second); loc != publicURL+"/auth/checksession"; time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("after login Chromium is at %s", loc)
					}
					loc, _ = chromedp.Run(tab, chromedp.Location())
				}
				// The landing document came through the OP's cross-site redirect,
				// without the Strict cookie; a navigation of the user's own has it.
				if err := chromedp.Do(tab, chromedp.Navigate(publicURL+"/auth/checksession")); err != nil {
					t.Fatal(err)
				}
				body, err := chromedp.Run(tab, chromedp.Evaluate[string]("document.body.innerText"))
				if err != nil || !strings.Contains(body, `"loggedIn":true`) {
					t.Fatalf("not logged in: %q %v", body, err)
				}
				cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{publicURL + "/"}})
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cookies.Cookies {
					if c.Name == session.CookieName {
						e.noteSecret(c.Value)
						if c.SameSite != network.CookieSameSiteStrict {
							t.Fatalf("session cookie SameSite=%s", c.SameSite)
						}
						return c
					}
				}
				t.Fatal("Chromium holds no session cookie")
				return nil
			}

			first := login()
			id, err := session.ParseID(first.Value)
			if err != nil {
				t.Fatal(err)
			}
			old, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
			if err != nil {
				t.Fatal(err)
			}
			oldRT := old.Tokens.RefreshToken

			second := login()
			if second.Value == first.Value {
				t.Fatal("the second login kept the session ID")
			}
			replay := e.browser()
			replay.setCookie(&http.Cookie{Name: session.CookieName, Value: first.Value})
			if got := replay.get("/auth/checksession").json(t); got["loggedIn"] != false {
				t.Errorf("the session from before the new login is still valid: %v", got)
			}
			e.eventually("the old session's refresh token is revoked", func() bool {
				for _, r := range e.op.Requests() {
					if r.Path == "/revoke" && r.Form.Get("token") == oldRT {
						return true
					}
				}
				return false
			})
			if l := e.logs.String(); !strings.Contains(l, `"event":"session_ended"`) || !strings.Contains(l, `"reason":"replaced by a new login"`) {
				t.Errorf("no session_ended audit line for the replaced session")
			}
		})
	}
}

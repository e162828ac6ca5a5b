package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/browsertest"

	"github.com/chromedp/chromedp"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/realop"
)

// spaFiles is a minimal SPA: it shows /auth/checksession's answer.
var spaFiles = map[string]string{
	"index.html": `<!doctype html><html><head><script src="/app.js" defer></script></head><body><pre id="out"></pre></body></html>`,
	"app.js": `fetch('/auth/checksession', {credentials: 'include'})
  .then(r => r.text())
  .then(t => { const o = document.getElementById('out'); o.textContent = t; o.dataset.done = '1'; });`,
}

// TestRealOPInChromium logs in and out in Chromium through moat and the
// real oidc-provider's own pages, with moat on localhost (another site than
// the provider on 127.0.0.1, so the return from the provider is a cross-site
// navigation) and on 127.0.0.1 (the same site).
func TestRealOPInChromium(t *testing.T) {
	browsertest.Require(t)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range spaFiles {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e := newRealEnv(t, realop.Options{}, func(c *config.Config) { c.SPA.Dir, c.OIDC.PostLogoutRedirectURL = dir, c.PublicURL+"/" }, publicHost(host))
			public := e.url

			tab := browsertest.New(t, 60*time.Second)

			do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				if err := chromedp.Do(tab, steps...); err != nil {
					loc, _ := chromedp.Run(tab, chromedp.Location())
					t.Fatalf("%s: %v (at %s)", what, err, loc)
				}
			}
			spaSees := func() string {
				t.Helper()
				do("the SPA renders", chromedp.WaitVisible(chromedp.CSS(`#out[data-done="1"]`)))
				out, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(`#out`)))
				if err != nil {
					t.Fatal(err)
				}
				return out
			}

			do("login at the provider",
				chromedp.Navigate(public+"/auth/login?returnTo=/"),
				chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
				chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "gina"),
				chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any"),
				chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
				chromedp.WaitVisible(chromedp.CSS(`input[name="prompt"][value="consent"] ~ button`)),
				chromedp.Click(chromedp.CSS(`input[name="prompt"][value="consent"] ~ button`)),
			)
			if out := spaSees(); !strings.Contains(out, `"loggedIn":true`) || !strings.Contains(out, `"sub":"gina"`) {
				t.Fatalf("after login the SPA sees %s", out)
			}

			status, err := chromedp.Run(tab, chromedp.Evaluate[float64](
				`fetch('/resource/api/orders', {credentials: 'include', headers: {'X-CSRF': '1'}}).then(r => r.status)`, chromedp.EvalAwaitPromise))
			if err != nil || status != 200 {
				t.Fatalf("API call from the SPA: %v %v", status, err)
			}
			logoutURL, err := chromedp.Run(tab, chromedp.Evaluate[string](
				`fetch('/auth/logout', {method: 'POST', credentials: 'include', headers: {'X-CSRF': '1'}}).then(r => r.json()).then(j => j.logoutUrl)`, chromedp.EvalAwaitPromise))
			if err != nil || logoutURL == "" {
				t.Fatalf("logout: %q %v", logoutURL, err)
			}
			do("logout at the provider",
				chromedp.Navigate(logoutURL),
				chromedp.WaitVisible(chromedp.CSS(`button[name="logout"]`)),
				chromedp.Click(chromedp.CSS(`button[name="logout"]`)),
			)
			out := spaSees()
			loc, _ := chromedp.Run(tab, chromedp.Location())
			if loc != public+"/" || !strings.Contains(out, `"loggedIn":false`) {
				t.Fatalf("after logout: at %s, the SPA sees %s", loc, out)
			}
		})
	}
}

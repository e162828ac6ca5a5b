package demo_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/browsertest"

	"github.com/chromedp/chromedp"
	"github.com/moat-bff/moat/internal/demo"
	"github.com/moat-bff/moat/internal/demo/idp"
)

// seedSPA is a stand-in for the founding FusionAuth BFF demo's React SPA
// (kmaida/auth-architecture bff/frontend), making the same calls the same
// way: checksession once on load, Log In and Log Out as top-level
// navigations to moat's /auth/login and /auth/logout, and the Protected,
// Profile and Call API pages fetching moat cross-origin with
// credentials: 'include'. The original sends no CSRF header; csrfHeader
// adds X-CSRF: 1 as @moat-bff/client does.
func seedSPA(apiURL string, csrfHeader bool) http.Handler {
	headers := "{}"
	if csrfHeader {
		headers = `{ 'X-CSRF': '1' }`
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, `const API_URL = %q;
const pages = { '/protected': '/api/protected-data', '/profile': '/auth/userinfo', '/call-api': '/resource/api/recipe' };
const $ = (id) => document.getElementById(id);
const res = await fetch(API_URL + '/auth/checksession', { credentials: 'include' });
const session = await res.json();
document.body.dataset.loggedIn = String(session.loggedIn);
$('who').textContent = session.loggedIn ? session.user.name : '';
$('login').onclick = () => { window.location.href = API_URL + '/auth/login'; };
$('logout').onclick = () => { window.location.href = API_URL + '/auth/logout'; };
const path = pages[location.pathname];
if (path) {
  if (!session.loggedIn) {
    location.replace('/'); // the seed's ProtectedRoute
  } else {
    const r = await fetch(API_URL + path, { credentials: 'include', headers: %s });
    $('out').textContent = await r.text();
    document.body.dataset.status = r.status;
  }
} else {
  $('out').textContent = JSON.stringify(session);
  document.body.dataset.status = res.status;
}
`, apiURL, headers)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>seed SPA</title><body>
<nav><a href="/">Home</a> <a href="/protected">Protected</a> <a href="/profile">Profile</a> <a href="/call-api">Call API</a>
<button id="login">Log In</button><button id="logout">Log Out</button> <span id="who"></span></nav>
<pre id="out"></pre><script type="module" src="/app.js"></script></body>`)
	})
	return mux
}

// TestBrowserSeedSPAOnLocalhost is issue 18.1: the seed demo's SPA on
// http://localhost:<port>, built with its API URL on localhost, against
// `moat demo --frontend-origin http://localhost:<port>`: the demo takes
// localhost as its host, so the SPA's cross-origin calls are same-site and
// carry the SameSite=Strict session cookie. Login, Protected, Profile, Call
// API and logout, in Chromium, for localhost and for 127.0.0.1.
func TestBrowserSeedSPAOnLocalhost(t *testing.T) {
	browsertest.Require(t)
	for _, tc := range []struct {
		name, host, csrf string
		header           bool
	}{
		// The unchanged SPA sends no CSRF header: fetch-metadata mode.
		{name: "localhost, unchanged SPA", host: "localhost", csrf: "fetch-metadata"},
		{name: "localhost, X-CSRF header", host: "localhost", csrf: "header", header: true},
		{name: "127.0.0.1, X-CSRF header", host: "127.0.0.1", csrf: "header", header: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var api string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seedSPA(api, tc.header).ServeHTTP(w, r) }))
			t.Cleanup(srv.Close)
			frontend := strings.Replace(srv.URL, "127.0.0.1", tc.host, 1)
			sys := startDemo(t, demo.Options{FrontendOrigin: frontend, CSRFMode: tc.csrf})
			if want := "http://" + tc.host + ":"; !strings.HasPrefix(sys.BFFURL, want) || !strings.HasPrefix(sys.IssuerURL, want) {
				t.Fatalf("moat at %s, issuer %s: want both on %s", sys.BFFURL, sys.IssuerURL, want)
			}
			api = sys.BFFURL
			b := newBrowser(t, sys)

			b.do(chromedp.Navigate(frontend + "/"))
			b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-logged-in="false"][data-status]`)))
			b.do(chromedp.Click(chromedp.CSS("#login")))
			b.do(
				chromedp.SendKeys(chromedp.CSS("#username"), idp.DemoUser.Username, chromedp.NodeVisible),
				chromedp.SendKeys(chromedp.CSS("#password"), idp.DemoUser.Password),
				chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			)
			b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-logged-in][data-status]`)))
			if u := b.location(); u != frontend+"/" {
				b.fatalf("after login the browser is at %s, want the SPA %s/", u, frontend)
			}
			if b.text("#who") != "Dana Demo" {
				b.fatalf("the SPA does not see the login: checksession says %s", b.text("#out"))
			}
			cookie := b.sessionCookie()
			b.checkpoint(tc.name + ", logged in")

			for _, p := range []struct{ path, want string }{
				{"/protected", "Hello, Dana Demo!"},
				{"/profile", idp.DemoUser.Email},
				{"/call-api", `"servedTo":"` + idp.DemoUser.Subject + `"`},
			} {
				b.do(chromedp.Navigate(frontend + p.path))
				b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-status]`)))
				if out := b.text("#out"); !strings.Contains(out, p.want) {
					b.fatalf("%s shows %q, want %q", p.path, out, p.want)
				}
				b.checkpoint(tc.name + " " + p.path)
			}

			b.do(chromedp.Click(chromedp.CSS("#logout")))
			b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-logged-in="false"][data-status]`)))
			if u := b.location(); u != frontend+"/" {
				b.fatalf("after logout the browser is at %s, want the SPA %s/", u, frontend)
			}
			if status := replay(t, sys.BFFURL+"/resource/api/recipe", cookie.Value); status != http.StatusUnauthorized {
				b.fatalf("the session cookie still works after logout: %d", status)
			}
			b.checkpoint(tc.name + ", logged out")
			b.finish()
		})
	}
}

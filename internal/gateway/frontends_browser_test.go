package gateway_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/moat-bff/moat/internal/browsertest"
	"github.com/moat-bff/moat/internal/session"
)

// TestFrontendsInChromium: two frontends on one moat listener, each with
// its own OP: a at http://localhost:PORT and b at http://127.0.0.1:PORT,
// or both at one of those origins, b mounted at /admin. One Chromium logs
// in at both and sees each frontend's own session (its own issuer) and
// API; another Chromium profile given a's session ID as b's cookie gets no
// session and no upstream call.
func TestFrontendsInChromium(t *testing.T) {
	browsertest.Require(t)
	for _, tc := range []struct {
		layout string
		at     func(port string) (string, string)
	}{
		{"hosts", byHost},
		{"paths_on_localhost", func(port string) (string, string) { a, _ := byHost(port); return a, a + "/admin" }},
		{"paths_on_127.0.0.1", func(port string) (string, string) { _, b := byHost(port); return b, b + "/admin" }},
	} {
		t.Run(tc.layout, func(t *testing.T) { frontendsInChromium(t, newFrontendsAt(t, tc.at)) })
	}
}

func frontendsInChromium(t *testing.T, f *twoFrontends) {
	mount := func(name string) string { u, _ := url.Parse(f.urls[name]); return u.Path }
	browser := browsertest.Start(t, 90*time.Second)
	user := browser.Tab(t, 60*time.Second)

	eval := func(ctx context.Context, js string) string {
		t.Helper()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return out
	}
	checksession := func(ctx context.Context, name string) map[string]any {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(f.urls[name]+"/auth/checksession")); err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(eval(ctx, "document.body.innerText")), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// api calls the frontend's API from its SPA, served by moat.
	api := func(ctx context.Context, name string) string {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(f.urls[name]+"/")); err != nil {
			t.Fatal(err)
		}
		if title := eval(ctx, "document.title"); title != "app "+name {
			t.Fatalf("%s serves the SPA %q", name, title)
		}
		return eval(ctx, `fetch('`+mount(name)+`/api/x', {credentials: 'include', headers: {'X-CSRF': '1'}}).then(r => String(r.status))`)
	}

	for _, name := range []string{"a", "b"} {
		if err := chromedp.Do(user, chromedp.Navigate(f.urls[name]+"/auth/login?returnTo="+mount(name)+"/auth/checksession")); err != nil {
			t.Fatal(err)
		}
		var loc string
		for deadline := time.Now().Add(10 * time.Second); loc != f.urls[name]+"/auth/checksession"; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after login at %s Chromium is at %s", name, loc)
			}
			loc, _ = chromedp.Run(user, chromedp.Location())
		}
	}
	for _, name := range []string{"a", "b"} {
		// A navigation of the user's own: the Strict cookie is sent.
		s := checksession(user, name)
		if u, _ := s["user"].(map[string]any); s["loggedIn"] != true || u["iss"] != f.ops[name].Issuer {
			t.Fatalf("%s: checksession in Chromium = %v, want a session of %s", name, s, f.ops[name].Issuer)
		}
		if code := api(user, name); code != "200" {
			t.Fatalf("%s: API call in Chromium: %s", name, code)
		}
		if sub := <-f.subs[name]; sub != "alice" {
			t.Errorf("%s's upstream got a token of %q", name, sub)
		}
	}

	// Each origin holds exactly the session cookies of its frontends.
	values := map[string]string{}
	for _, name := range []string{"a", "b"} {
		res, err := chromedp.Call(user, network.GetCookies, network.GetCookiesParams{URLs: []string{f.urls[name] + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{session.CookieName + "-" + name: true}
		if mount("a") != mount("b") {
			want[session.CookieName+"-a"], want[session.CookieName+"-b"] = true, true // one origin, Path=/
		}
		for _, c := range res.Cookies {
			if !strings.HasPrefix(c.Name, session.CookieName) {
				continue
			}
			if !want[c.Name] {
				t.Errorf("%s's origin holds session cookie %s", name, c.Name)
			}
			delete(want, c.Name)
			if c.Name == session.CookieName+"-"+name {
				values[name] = c.Value
			}
		}
		if len(want) != 0 {
			t.Errorf("%s's origin lacks %v", name, want)
		}
	}
	if values["a"] == "" || values["b"] == "" || values["a"] == values["b"] {
		t.Fatalf("session cookies: %d %d bytes", len(values["a"]), len(values["b"]))
	}

	// Another profile plants a's session ID as b's cookie on b's host.
	thief := browser.Tab(t, 60*time.Second)
	yes := true
	if err := chromedp.Do(thief); err != nil { // open the tab before calling into it
		t.Fatal(err)
	}
	_, err := chromedp.Call(thief, network.SetCookie, network.SetCookieParams{Name: session.CookieName + "-b", Value: values["a"],
		URL: f.urls["b"] + "/", Path: "/", Secure: &yes, HTTPOnly: &yes, SameSite: network.CookieSameSiteStrict})
	if err != nil {
		t.Fatal(err)
	}
	hits := f.hits["b"].Load()
	if s := checksession(thief, "b"); s["loggedIn"] != false {
		t.Errorf("a's session ID as b's cookie: checksession = %v", s)
	}
	if code := api(thief, "b"); code != "401" {
		t.Errorf("a's session ID as b's cookie: API call %s, want 401", code)
	}
	if f.hits["b"].Load() != hits {
		t.Error("b's upstream was called with a's session ID")
	}
	// The user's own sessions are untouched.
	for _, name := range []string{"a", "b"} {
		if s := checksession(user, name); s["loggedIn"] != true {
			t.Errorf("%s: the user's session ended: %v", name, s)
		}
	}
	e := &env{t: t, op: f.ops["a"], logs: f.logs, secrets: []string{values["a"], values["b"]}}
	e.scanLogs()
}

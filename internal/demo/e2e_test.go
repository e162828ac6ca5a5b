package demo_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/browsertest"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/moat-bff/moat/internal/demo"
	"github.com/moat-bff/moat/internal/demo/idp"
	"github.com/moat-bff/moat/internal/session"
)

// TestBrowserEndToEnd walks the demo as a person would, in a real browser:
// log in at the IdP, use the three kinds of API, outlive the access token,
// log out. At every step it looks everywhere a page can keep or see data
// for the tokens the IdP issued, and finds none. It walks on the default
// host, 127.0.0.1, and on localhost (--host localhost, or a
// --frontend-origin on localhost): the Secure session cookie must work on
// plain http on both, in one Chromium.
func TestBrowserEndToEnd(t *testing.T) {
	chromium := browsertest.Start(t, 3*time.Minute)
	for _, host := range []string{demo.DefaultHost, "localhost"} {
		t.Run(host, func(t *testing.T) { walkDemo(t, chromium, host) })
	}
}

func walkDemo(t *testing.T, chromium *browsertest.Browser, host string) {
	const ttl = 3 * time.Second
	sys := startDemo(t, demo.Options{AccessTokenTTL: ttl, Host: host})
	if !strings.HasPrefix(sys.BFFURL, "http://"+host+":") || !strings.HasPrefix(sys.IssuerURL, "http://"+host+":") {
		t.Fatalf("moat at %s, the IdP at %s: want both on %s", sys.BFFURL, sys.IssuerURL, host)
	}
	b := newBrowserIn(t, sys, chromium.Tab(t, 90*time.Second))

	// 1. The SPA loads, logged out.
	b.do(chromedp.Navigate(sys.BFFURL + "/"))
	b.waitRender(1)
	b.expectText("#result", `"loggedIn": false`)
	b.checkScannerSeesStorage()
	b.checkpoint("logged out, first load")

	// 2. Log In: to the IdP's form, and back to the SPA, logged in.
	b.do(chromedp.Click(chromedp.CSS("#login"), chromedp.NodeVisible))
	b.do(chromedp.WaitVisible(chromedp.CSS("#username")))
	if u := b.location(); !strings.HasPrefix(u, sys.IssuerURL+"/login") {
		b.fatalf("Log In led to %s, not the IdP's login page", u)
	}
	b.checkpoint("IdP login page")
	b.do(
		chromedp.SendKeys(chromedp.CSS("#username"), idp.DemoUser.Username),
		chromedp.SendKeys(chromedp.CSS("#password"), idp.DemoUser.Password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-logged-in="true"] #view[data-state="done"]`)))
	b.seq = 1 // a new document: the SPA's first render
	if u := b.location(); u != sys.BFFURL+"/" {
		b.fatalf("after login the browser is at %s, want %s/", u, sys.BFFURL)
	}
	b.expectText("#result", `"loggedIn": true`)
	b.expectText("#result", idp.DemoUser.Email)
	b.expectText("#who", "Dana Demo")

	// The cookie question: the session cookie is Secure and __Host-, and
	// moat runs on plain http. Being logged in shows the browser stored it
	// and sent it back; here are its attributes.
	cookie := b.sessionCookie()
	t.Logf("session cookie on %s: %s HttpOnly=%v Secure=%v SameSite=%s Path=%s Domain=%s Session=%v",
		sys.BFFURL, cookie.Name, cookie.HTTPOnly, cookie.Secure, cookie.SameSite, cookie.Path, cookie.Domain, cookie.Session)
	if !cookie.HTTPOnly || !cookie.Secure || cookie.SameSite != network.CookieSameSiteStrict || cookie.Path != "/" {
		b.fatalf("session cookie attributes: %+v", cookie)
	}
	b.checkpoint("logged in, home")

	// 3. The three APIs: local handler, UserInfo, proxied resource API.
	b.open("#/protected", 200)
	b.expectText("#result", "Hello, Dana Demo!")
	b.checkpoint("protected")

	b.open("#/profile", 200)
	b.expectText("#result", `"userInfo"`)
	b.expectText("#result", idp.DemoUser.Email)
	b.checkpoint("profile")

	b.open("#/recipe", 200)
	if name := b.text("#recipe-name"); name == "" {
		b.fatalf("no recipe shown")
	}
	b.checkpoint("recipe")

	// 4. Outlive the access token: the next call refreshes it at the IdP.
	refreshes := sys.IdP.Refreshes()
	time.Sleep(ttl + 500*time.Millisecond)
	b.again(200)
	if got := sys.IdP.Refreshes(); got <= refreshes {
		b.fatalf("calling the API after the access token expired did not refresh it (refreshes %d → %d)", refreshes, got)
	}
	b.expectText("#result", `"servedTo": "`+idp.DemoUser.Subject+`"`)
	b.checkpoint("recipe after refresh")

	// The cookie works outside the browser too, as long as the session
	// lives: the replay below is a fair test.
	if status := replay(t, sys.BFFURL+"/resource/api/recipe", cookie.Value); status != http.StatusOK {
		b.fatalf("replaying the live session cookie: %d, want 200", status)
	}

	// 5. Log Out: the BFF ends the session, the IdP its own, and the
	// browser comes back to the SPA, logged out.
	revocations := sys.IdP.Revocations()
	b.do(chromedp.Click(chromedp.CSS("#logout"), chromedp.NodeVisible))
	b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-logged-in="false"] #view[data-state="done"]`)))
	if u := b.location(); !strings.HasPrefix(u, sys.BFFURL+"/") {
		b.fatalf("after logout the browser is at %s", u)
	}
	b.expectText("#result", `"loggedIn": false`)
	for deadline := time.Now().Add(2 * time.Second); sys.IdP.Revocations() <= revocations; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.fatalf("logout did not revoke the refresh token at the IdP")
		}
	}
	b.checkpoint("logged out")

	for _, path := range []string{"/resource/api/recipe", "/api/protected-data", "/auth/userinfo"} {
		if status := replay(t, sys.BFFURL+path, cookie.Value); status != http.StatusUnauthorized {
			b.fatalf("replaying the old session cookie on %s after logout: %d, want 401", path, status)
		}
	}
	b.finish()
}

// replay sends a plain Go request with the session cookie and the CSRF
// header, as an attacker holding a stolen cookie would.
func replay(t *testing.T, u, cookie string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
	req.Header.Set("X-CSRF", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("replay %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// browser drives one Chromium tab and records every response body the
// page receives.
type browser struct {
	t     *testing.T
	ctx   context.Context
	sys   *demo.System
	start time.Time
	seq   int // renders of the SPA seen so far in this document

	mu      sync.Mutex
	urls    map[network.RequestID]string
	bodies  []responseBody
	pending int
	blocked []string                   // cookies Chromium refused to store, with its reasons
	unread  []string                   // responses whose body could not be read
	held    map[network.RequestID]bool // bodies read through the Fetch domain
	// preflight marks CORS preflights, whose 204 has no body.
	preflight map[network.RequestID]bool
}

type responseBody struct {
	url, text string
}

func newBrowser(t *testing.T, sys *demo.System) *browser {
	return newBrowserIn(t, sys, browsertest.New(t, 90*time.Second))
}

// newBrowserIn is newBrowser in a tab already open.
func newBrowserIn(t *testing.T, sys *demo.System, tab context.Context) *browser {
	b := &browser{t: t, ctx: tab, sys: sys, start: time.Now(), urls: map[network.RequestID]string{}, held: map[network.RequestID]bool{}, preflight: map[network.RequestID]bool{}}

	finished := make(chan network.RequestID, 4096)
	err := chromedp.Listen(tab, func(ev any) {
		// Runs in the tab's read loop: record and return, no commands here.
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			b.urls[ev.RequestID] = ev.Response.URL
			if ev.Type == network.ResourceTypePreflight {
				b.preflight[ev.RequestID] = true // a CORS preflight has no body to read
			}
		case *network.EventLoadingFinished:
			b.pending++
			finished <- ev.RequestID
		case *network.EventResponseReceivedExtraInfo:
			for _, c := range ev.BlockedCookies {
				b.blocked = append(b.blocked, fmt.Sprintf("%v: %s", c.BlockedReasons, strings.SplitN(c.CookieLine, "=", 2)[0]))
			}
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	go func() {
		for {
			var id network.RequestID
			select {
			case id = <-finished:
			case <-tab.Done():
				return
			}
			res, err := chromedp.Call(tab, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
			b.mu.Lock()
			if err == nil {
				b.bodies = append(b.bodies, responseBody{url: b.urls[id], text: string(res.Body)})
			} else if tab.Err() == nil && !b.held[id] && !b.preflight[id] && !strings.HasSuffix(b.urls[id], "/favicon.ico") {
				// (The favicon is the browser's own request, not the page's;
				// Chromium does not always keep its body.)
				b.unread = append(b.unread, fmt.Sprintf("%s: %v", b.urls[id], err))
			}
			b.pending--
			b.mu.Unlock()
		}
	}()

	// The SPA navigates away as soon as POST /auth/logout answers, and
	// Chromium then drops that response before Network.getResponseBody can
	// read it. The Fetch domain holds the response until its body is read.
	paused := chromedp.Events(tab, fetch.RequestPaused)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			if ev.ResponseStatusCode >= 300 && ev.ResponseStatusCode < 400 {
				// GET /auth/logout's redirect: moat writes no body, and
				// Chromium has none to give for a redirect.
				b.mu.Lock()
				b.held[ev.NetworkID] = true
				b.mu.Unlock()
				chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				continue
			}
			res, err := chromedp.Call(tab, fetch.GetResponseBody, fetch.GetResponseBodyParams{RequestID: ev.RequestID})
			b.mu.Lock()
			if err == nil {
				b.bodies = append(b.bodies, responseBody{url: ev.Request.URL, text: string(res.Body)})
				b.held[ev.NetworkID] = true
			} else {
				b.unread = append(b.unread, fmt.Sprintf("%s: %v", ev.Request.URL, err))
			}
			b.mu.Unlock()
			chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	b.do(chromedp.EmulateViewport(1100, 900))
	if _, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{
		{URLPattern: "*/auth/logout", RequestStage: fetch.RequestStageResponse},
	}}); err != nil {
		t.Fatalf("Fetch.enable: %v", err)
	}
	return b
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("browser: %v", err)
	}
}

func (b *browser) location() string {
	b.t.Helper()
	u, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.fatalf("reading the location: %v", err)
	}
	return u
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fatalf("reading %s: %v", sel, err)
	}
	return s
}

func (b *browser) expectText(sel, want string) {
	b.t.Helper()
	if got := b.text(sel); !strings.Contains(got, want) {
		b.fatalf("%s does not contain %q:\n%s", sel, want, got)
	}
}

// waitRender waits for the SPA's render number seq (counted since the
// document loaded) to finish.
func (b *browser) waitRender(seq int) {
	b.t.Helper()
	b.seq = seq
	b.do(chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#view[data-state="done"][data-seq="%d"]`, seq))))
}

// open follows a navigation link of the SPA and expects the page's API call
// to answer status.
func (b *browser) open(hash string, status int) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`nav a[href=%q]`, hash)), chromedp.NodeVisible))
	b.waitRender(b.seq + 1)
	b.expectStatus(status)
}

// again clicks the page's "Call again" button.
func (b *browser) again(status int) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS("#view button"), chromedp.NodeVisible))
	b.waitRender(b.seq + 1)
	b.expectStatus(status)
}

func (b *browser) expectStatus(status int) {
	b.t.Helper()
	if got := b.text("#status"); got != fmt.Sprintf("HTTP %d", status) {
		b.fatalf("the page shows %q, want HTTP %d; body:\n%s", got, status, b.text("#result"))
	}
}

func (b *browser) sessionCookie() *network.Cookie {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.sys.BFFURL + "/"}})
	if err != nil {
		b.fatalf("reading cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == session.CookieName {
			return c
		}
	}
	b.mu.Lock()
	blocked := b.blocked
	b.mu.Unlock()
	b.fatalf("Chromium holds no %s cookie for %s; cookies it refused: %v", session.CookieName, b.sys.BFFURL, blocked)
	return nil
}

// pageData is everything a script on the page can read by itself.
type pageData struct {
	Local     map[string]string `json:"local"`
	Session   map[string]string `json:"session"`
	Cookie    string            `json:"cookie"`
	IndexedDB []string          `json:"indexedDB"` // "db/store: rows as JSON", every store of every database
	Caches    []string          `json:"caches"`    // "cache url: body", every Cache Storage entry
	DOM       string            `json:"dom"`
}

const readPageData = `(async () => {
  const dump = (s) => Object.fromEntries(Array.from({ length: s.length }, (_, i) => [s.key(i), s.getItem(s.key(i))]));
  return {
    local: dump(localStorage),
    session: dump(sessionStorage),
    cookie: document.cookie,
    indexedDB: await readIndexedDB(),
    caches: await readCaches(),
    dom: document.documentElement.outerHTML,
  };
  async function readIndexedDB() {
    const done = (r) => new Promise((ok, fail) => { r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
    const out = [];
    for (const info of await indexedDB.databases()) {
      const db = await done(indexedDB.open(info.name));
      for (const store of db.objectStoreNames) {
        const rows = await done(db.transaction(store).objectStore(store).getAll());
        out.push(info.name + "/" + store + ": " + JSON.stringify(rows));
      }
      db.close();
    }
    return out;
  }
  async function readCaches() {
    const out = [];
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const req of await cache.keys()) {
        const res = await cache.match(req);
        out.push(name + " " + req.url + ": " + (res ? await res.text() : ""));
      }
    }
    return out;
  }
})()`

// plantCanary writes canary where a careless SPA might keep a token: an
// IndexedDB store and Cache Storage. checkpoint must find it there, or its
// "no token in IndexedDB or caches" would prove nothing.
const plantCanary = `(async (canary) => {
  const db = await new Promise((ok, fail) => {
    const r = indexedDB.open("moat-e2e-canary", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("s");
    r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error);
  });
  await new Promise((ok, fail) => { const tx = db.transaction("s", "readwrite"); tx.objectStore("s").put({ token: canary }, 1); tx.oncomplete = ok; tx.onerror = () => fail(tx.error); });
  db.close();
  await (await caches.open("moat-e2e-canary")).put("/canary", new Response(canary));
  return true;
})`

const removeCanary = `(async () => {
  await new Promise((ok) => { const r = indexedDB.deleteDatabase("moat-e2e-canary"); r.onsuccess = ok; r.onerror = ok; r.onblocked = ok; });
  await caches.delete("moat-e2e-canary");
  return true;
})()`

// checkScannerSeesStorage plants a canary in IndexedDB and Cache Storage,
// checks that readPageData finds it in both, and removes it.
func (b *browser) checkScannerSeesStorage() {
	b.t.Helper()
	const canary = "canary-eyJhbGciOiJSUzI1NiJ9.not-a-real-token"
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](plantCanary+"("+strconv.Quote(canary)+")", chromedp.EvalAwaitPromise)); err != nil {
		b.fatalf("planting the canary: %v", err)
	}
	data, err := chromedp.Run(b.ctx, chromedp.Evaluate[pageData](readPageData, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fatalf("reading the page's storage: %v", err)
	}
	if !strings.Contains(strings.Join(data.IndexedDB, "\n"), canary) || !strings.Contains(strings.Join(data.Caches, "\n"), canary) {
		b.fatalf("the storage scan missed a planted canary: IndexedDB %q, caches %q", data.IndexedDB, data.Caches)
	}
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](removeCanary, chromedp.EvalAwaitPromise)); err != nil {
		b.fatalf("removing the canary: %v", err)
	}
}

// checkpoint searches storage, document.cookie, IndexedDB, the DOM and
// every response body received so far for every token the IdP has issued.
func (b *browser) checkpoint(step string) {
	b.t.Helper()
	data, err := chromedp.Run(b.ctx, chromedp.Evaluate[pageData](readPageData, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fatalf("%s: reading the page's storage: %v", step, err)
	}
	if data.Cookie != "" || len(data.IndexedDB) > 0 || len(data.Caches) > 0 || len(data.Local) > 0 || len(data.Session) > 0 {
		b.t.Logf("%s: document.cookie=%q localStorage=%v sessionStorage=%v IndexedDB=%v caches=%d entries", step, data.Cookie, data.Local, data.Session, data.IndexedDB, len(data.Caches))
	}
	places := map[string]string{"document.cookie": data.Cookie, "DOM": data.DOM}
	for k, v := range data.Local {
		places["localStorage["+k+"]"] = k + "=" + v
	}
	for k, v := range data.Session {
		places["sessionStorage["+k+"]"] = k + "=" + v
	}
	for i, rows := range data.IndexedDB {
		places[fmt.Sprintf("IndexedDB store %d", i)] = rows
	}
	for i, entry := range data.Caches {
		places[fmt.Sprintf("Cache Storage entry %d", i)] = entry
	}
	// Every cookie the browser holds for the BFF and the IdP, HttpOnly or
	// not: none may carry a token, and none may be readable by script.
	jar, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.sys.BFFURL + "/", b.sys.IssuerURL + "/"}})
	if err != nil {
		b.fatalf("%s: reading cookies: %v", step, err)
	}
	var names []string
	for _, c := range jar.Cookies {
		names = append(names, c.Name)
		places["cookie "+c.Name] = c.Value
		if !c.HTTPOnly {
			b.fatalf("%s: cookie %s on %s is readable by script (not HttpOnly)", step, c.Name, c.Domain)
		}
	}

	bodies := b.settledBodies()
	tokens := b.sys.IdP.IssuedTokens()
	if len(tokens) == 0 && step != "logged out, first load" && step != "IdP login page" {
		b.fatalf("%s: the IdP recorded no issued tokens", step)
	}
	var leaks []string
	for _, tok := range tokens {
		for where, text := range places {
			if strings.Contains(text, tok.Value) {
				leaks = append(leaks, fmt.Sprintf("%s in %s", tok.Kind, where))
			}
		}
		for _, body := range bodies {
			if !strings.Contains(body.text, tok.Value) {
				continue
			}
			leaks = append(leaks, fmt.Sprintf("%s in the response body of %s", tok.Kind, body.url))
		}
	}
	if len(leaks) > 0 {
		b.fatalf("%s: tokens reached the page:\n  %s", step, strings.Join(leaks, "\n  "))
	}
	b.t.Logf("%6.2fs  %-22s no token in storage, cookies, IndexedDB, Cache Storage, DOM or %d response bodies (%d tokens issued); cookies %v",
		time.Since(b.start).Seconds(), step, len(bodies), len(tokens), names)
	if dir := os.Getenv("MOAT_E2E_SCREENSHOTS"); dir != "" {
		b.screenshot(dir, step)
	}
}

// settledBodies waits until the bodies of all finished responses are read.
func (b *browser) settledBodies() []responseBody {
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		pending, bodies := b.pending, append([]responseBody(nil), b.bodies...)
		b.mu.Unlock()
		if pending == 0 || time.Now().After(deadline) {
			return bodies
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *browser) finish() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.blocked) > 0 {
		b.t.Errorf("Chromium refused cookies: %v", b.blocked)
	}
	if len(b.unread) > 0 {
		b.t.Errorf("response bodies that could not be read, so not scanned:\n  %s", strings.Join(b.unread, "\n  "))
	}
	b.t.Logf("browser walk took %s; %d response bodies scanned", time.Since(b.start).Round(10*time.Millisecond), len(b.bodies))
}

// fatalf saves a screenshot of the page, says where, and fails the test.
func (b *browser) fatalf(format string, args ...any) {
	b.t.Helper()
	dir := os.Getenv("MOAT_E2E_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "moat-e2e-"); err != nil {
			b.t.Fatalf(format, args...)
		}
	}
	b.screenshot(dir, "failure")
	b.t.Fatalf(format, args...)
}

func (b *browser) screenshot(dir, name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("no screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, strings.NewReplacer(" ", "-", ",", "").Replace(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("no screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// TestBrowserFrontendOrigin checks what docs/demo.md promises for an SPA on
// its own dev server at http://127.0.0.1:<another port>, same site as moat,
// with --frontend-origin: login lands back on the SPA, and its API calls
// carry the SameSite=Strict session cookie, both when the dev server
// proxies /auth, /api and /resource to moat (Vite's server.proxy) and when
// the SPA calls moat cross-origin with credentials: 'include' and
// --csrf-mode fetch-metadata. (An SPA on localhost: seedspa_test.go.)
func TestBrowserFrontendOrigin(t *testing.T) {
	browsertest.Require(t)
	for _, tc := range []struct {
		name, csrf string
		proxy      bool
	}{
		{name: "dev server proxy", csrf: "header", proxy: true},
		{name: "cross-origin calls", csrf: "fetch-metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bff *url.URL
			// The SPA calls moat through the dev server (base "") or
			// directly (base moat's URL).
			base, headers := "", `{ 'X-CSRF': '1' }`
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `<!doctype html><body data-base=%q><pre id="out"></pre><script type="module" src="/app.js"></script></body>`, base)
			})
			mux.HandleFunc("/app.js", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/javascript")
				fmt.Fprintf(w, `const res = await fetch(document.body.dataset.base + '/resource/api/recipe', { credentials: 'include', headers: %s });
document.getElementById('out').textContent = await res.text();
document.body.dataset.status = res.status;`, headers)
			})
			if tc.proxy {
				proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(bff) }}
				for _, p := range []string{"/auth/", "/api/", "/resource/"} {
					mux.Handle(p, proxy)
				}
			}
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			frontend := srv.URL
			sys := startDemo(t, demo.Options{FrontendOrigin: frontend, CSRFMode: tc.csrf})
			bff, _ = url.Parse(sys.BFFURL)
			login := frontend + "/auth/login?returnTo=/"
			if !tc.proxy {
				base, headers, login = sys.BFFURL, "{}", sys.BFFURL+"/auth/login?returnTo=/"
			}
			b := newBrowser(t, sys)

			b.do(chromedp.Navigate(frontend + "/"))
			b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-status="401"]`)))
			b.do(chromedp.Navigate(login))
			b.do(
				chromedp.SendKeys(chromedp.CSS("#username"), idp.DemoUser.Username),
				chromedp.SendKeys(chromedp.CSS("#password"), idp.DemoUser.Password),
				chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			)
			b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-status]`)))
			if u := b.location(); u != frontend+"/" {
				b.fatalf("after login the browser is at %s, want the frontend %s/", u, frontend)
			}
			out := b.text("#out")
			if !strings.Contains(out, `"servedTo"`) {
				b.fatalf("the frontend's API call did not get a recipe:\n%s", out)
			}
			b.checkpoint(tc.name)

			// Logging out by a top-level navigation lands back on the
			// frontend, logged out.
			logout := frontend + "/auth/logout"
			if !tc.proxy {
				logout = sys.BFFURL + "/auth/logout"
			}
			b.do(chromedp.Navigate(logout))
			b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-status="401"]`)))
			if u := b.location(); u != frontend+"/" {
				b.fatalf("after logout the browser is at %s, want the frontend %s/", u, frontend)
			}
			b.checkpoint(tc.name + ", logged out")
			b.finish()
		})
	}
}

// moat demo --resource-api URL proxies /resource/api/ to the user's own
// API instead of the recipe API: the SPA's Call API page reaches it with
// the user's access token and no cookie.
func TestBrowserOwnResourceAPI(t *testing.T) {
	browsertest.Require(t)
	var mu sync.Mutex
	var auth, cookies []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth, cookies = append(auth, r.Header.Get("Authorization")), append(cookies, r.Header.Get("Cookie"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name": "my own API at %s", "cuisine": "test", "ingredients": [], "instructions": []}`, r.URL.Path)
	}))
	defer api.Close()
	sys := startDemo(t, demo.Options{ResourceAPI: api.URL + "/v2/"})
	if sys.APIURL != api.URL+"/v2/" {
		t.Errorf("/resource/api/ goes to %s, not the --resource-api URL", sys.APIURL)
	}
	b := newBrowser(t, sys)
	b.do(chromedp.Navigate(sys.BFFURL + "/"))
	b.waitRender(1)
	b.do(chromedp.Click(chromedp.CSS("#login"), chromedp.NodeVisible))
	b.do(
		chromedp.SendKeys(chromedp.CSS("#username"), idp.DemoUser.Username, chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.CSS("#password"), idp.DemoUser.Password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	b.do(chromedp.WaitVisible(chromedp.CSS(`body[data-logged-in="true"] #view[data-state="done"]`)))
	b.seq = 1
	b.open("#/recipe", 200)
	if name := b.text("#recipe-name"); !strings.Contains(name, "my own API at /v2/recipe") {
		b.fatalf("the Call API page shows %q, not the own API's answer", name)
	}
	mu.Lock()
	defer mu.Unlock()
	issued := map[string]bool{}
	for _, tok := range sys.IdP.IssuedTokens() {
		issued[tok.Value] = true
	}
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") || !issued[strings.TrimPrefix(auth[0], "Bearer ")] || cookies[0] != "" {
		b.fatalf("the own API saw Authorization %q and Cookie %q; want one call with an issued access token and no cookie", auth, cookies)
	}
	b.checkpoint("own resource API")
	b.finish()
}

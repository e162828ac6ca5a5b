package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/session"
)

// mounted is two frontends on one origin: a at its root, b at /admin.
func mounted(port string) (string, string) {
	return "http://127.0.0.1:" + port, "http://127.0.0.1:" + port + "/admin"
}

// TestFrontendsMounted: frontends that share an origin are told apart by
// path. b, mounted at /admin, logs in with its own client and redirect_uri
// (under /admin), lands on /admin/, and its API calls carry its issuer's
// token; a at the root keeps the rest, /administrator included. Each
// session cookie, though the browser sends both to both, authenticates
// only its own frontend, and a back-channel logout at b leaves a.
func TestFrontendsMounted(t *testing.T) {
	f := newFrontendsAt(t, mounted)
	user := agent{}
	if landing := f.login(user, "b"); landing != "/admin/" {
		t.Errorf("b's login landed on %q, want /admin/", landing)
	}
	if landing := f.login(user, "a"); landing != "/" {
		t.Errorf("a's login landed on %q, want /", landing)
	}
	jar := user["127.0.0.1"]
	if jar[session.CookieName+"-a"] == "" || jar[session.CookieName+"-b"] == "" || len(jar) != 3 {
		t.Fatalf("cookies: %v (each frontend's session and the login binding)", jar)
	}
	for _, name := range []string{"a", "b"} {
		s := f.session(user, name)
		if u, _ := s["user"].(map[string]any); s["loggedIn"] != true || u["iss"] != f.ops[name].Issuer {
			t.Fatalf("%s: checksession = %v, want a session of %s", name, s, f.ops[name].Issuer)
		}
		if code := f.api(user, name); code != http.StatusOK {
			t.Fatalf("%s: api = %d", name, code)
		}
		if sub := <-f.subs[name]; sub != "alice" {
			t.Errorf("%s's upstream got a token of %q, want its own issuer's alice", name, sub)
		}
	}
	if !strings.Contains(f.logs.String(), `"path":"/admin/api/x"`) {
		t.Errorf("the access log names b's call without its mount path:\n%s", f.logs)
	}

	// b's session ID under a's cookie name at a, and a's under b's at
	// b: nothing, and no upstream call.
	hits := f.hits["a"].Load() + f.hits["b"].Load()
	for _, tc := range []struct{ at, stolen, as string }{{"a", "b", "a"}, {"b", "a", "b"}} {
		thief := agent{"127.0.0.1": {session.CookieName + "-" + tc.as: jar[session.CookieName+"-"+tc.stolen]}}
		if code := f.api(thief, tc.at); code != http.StatusUnauthorized {
			t.Errorf("%s's session ID at %s: api = %d, want 401", tc.stolen, tc.at, code)
		}
	}
	if f.hits["a"].Load()+f.hits["b"].Load() != hits {
		t.Error("an upstream was called with the other frontend's session")
	}

	// Paths: each frontend's SPA, the mount's directory, and refusals.
	for _, tc := range []struct {
		path   string
		status int
		want   string // body substring, or Location for a redirect
	}{
		{"/", 200, "app a"},
		{"/orders", 200, "app a"},
		{"/administrator", 200, "app a"},
		{"/admin/", 200, "app b"},
		{"/admin/users/7", 200, "app b"},
		{"/admin", 308, "/admin/"},
		{"/admin?tab=2", 308, "/admin/?tab=2"},
		{"/admin/../api/x", 400, "bad_path"},
		{"/admin//api/x", 400, "bad_path"},
		{"/%61dmin/api/x", 400, "bad_path"},
	} {
		resp, body := f.do(user, "GET", f.urls["a"]+tc.path, http.Header{csrf.HeaderName: {csrf.HeaderValue}})
		got := string(body)
		if resp.StatusCode/100 == 3 {
			got = resp.Header.Get("Location")
		}
		if resp.StatusCode != tc.status || !strings.Contains(got, tc.want) {
			t.Errorf("GET %s: %s %q, want %d %q", tc.path, resp.Status, got, tc.status, tc.want)
		}
	}
	if f.hits["a"].Load()+f.hits["b"].Load() != hits {
		t.Error("a refused path reached an upstream")
	}

	// A back-channel logout at b's mounted endpoint ends b's session only.
	resp, err := f.client.PostForm(f.urls["b"]+"/auth/backchannel-logout", url.Values{"logout_token": {f.ops["b"].LogoutToken("alice", "", nil)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout at b: %s", resp.Status)
	}
	f.clock.Advance(time.Second) // past session.cache_ttl: the store decides
	if s := f.session(user, "b"); s["loggedIn"] != false {
		t.Errorf("b's session survived its back-channel logout: %v", s)
	}
	if s := f.session(user, "a"); s["loggedIn"] != true {
		t.Fatalf("a's session ended with b's back-channel logout: %v", s)
	}
	// A logout at a, at the root, ends a's and lands on a's page.
	resp, body := f.do(user, "POST", f.urls["a"]+"/auth/logout", http.Header{csrf.HeaderName: {csrf.HeaderValue}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout at a: %s %s", resp.Status, body)
	}
	if s := f.session(user, "a"); s["loggedIn"] != false {
		t.Errorf("a's session survived its logout: %v", s)
	}
}

// TestFrontendsMountedForwardAuth: forward-auth picks the frontend by the
// original request's host and path, and decides on the path below the
// mount.
func TestFrontendsMountedForwardAuth(t *testing.T) {
	f := newFrontendsAt(t, mounted)
	fa := httptest.NewServer(f.gw.ForwardAuth)
	t.Cleanup(fa.Close)
	user := agent{}
	f.login(user, "b")
	check := func(uri string) *http.Response {
		return forwardAuthGET(t, fa.URL, "127.0.0.1:"+f.port, uri, user["127.0.0.1"])
	}
	r := check("/admin/api/x")
	if sub, ok := f.ops["b"].ValidAccessToken(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); r.StatusCode != http.StatusOK || !ok || sub != "alice" {
		t.Fatalf("b's session at /admin/api/x: %s, a token of b's OP: %v", r.Status, ok)
	}
	if r := check("/api/x"); r.StatusCode != http.StatusUnauthorized || r.Header.Get("Authorization") != "" {
		t.Errorf("b's session at a's /api/x: %s, a token: %v", r.Status, r.Header.Get("Authorization") != "")
	}
	if r := check("/admin/nothing"); r.StatusCode != http.StatusNotFound {
		t.Errorf("/admin/nothing: %s, want b's 404 (no route)", r.Status)
	}
}

// TestFrontendsMountedOnly: on a host where every frontend is mounted at
// a path, the rest is 404 with a JSON body, and /readyz there covers
// every frontend.
func TestFrontendsMountedOnly(t *testing.T) {
	f := newFrontendsAt(t, func(port string) (string, string) {
		return "http://127.0.0.1:" + port + "/shop", "http://127.0.0.1:" + port + "/admin"
	})
	for path, want := range map[string]string{"/": "not_found", "/auth/login": "not_found", "/shopping": "not_found"} {
		resp, body := f.do(agent{}, "GET", "http://127.0.0.1:"+f.port+path, nil)
		var e map[string]any
		json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusNotFound || e["error"] != want {
			t.Errorf("GET %s: %s %s", path, resp.Status, body)
		}
	}
	resp, body := f.do(agent{}, "GET", "http://127.0.0.1:"+f.port+"/readyz", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s %s", resp.Status, body)
	}
	if landing := f.login(agent{}, "a"); landing != "/shop/" {
		t.Errorf("a's login landed on %q", landing)
	}
}

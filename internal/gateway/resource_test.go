package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// resourceUpstream records, for each request, the RFC 8707 resource of the
// access token it received ("" for the session's own, "-" for none).
type resourceUpstream struct {
	*httptest.Server
	mu  sync.Mutex
	got []string
}

func newResourceUpstream(t *testing.T, op **oidctest.Provider) *resourceUpstream {
	u := &resourceUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := "-"
		if at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if v, live := (*op).AccessTokenResource(at); live {
				res = v
			}
		}
		u.mu.Lock()
		u.got = append(u.got, res)
		u.mu.Unlock()
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *resourceUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[len(u.got)-1]
}

// TestResourceIndicators: each route with routes[].resource sends its
// upstream a token restricted to exactly that resource, obtained once per
// session; the login asked for every resource; a token for API A never
// reaches API B; other routes keep the session's own token.
func TestResourceIndicators(t *testing.T) {
	var op *oidctest.Provider
	a, b := newResourceUpstream(t, &op), newResourceUpstream(t, &op)
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/a/", Upstream: a.URL + "/", Resource: "https://api-a.example/"},
			config.Route{Prefix: "/resource/b/", Upstream: b.URL + "/", Resource: "https://api-b.example/"},
		)
	})
	op = e.op
	br := e.browser()
	br.login("/")
	var authz url.Values
	for _, r := range e.op.Requests() {
		if r.Path == "/authorize" || r.Path == "/par" {
			authz = r.Form
		}
	}
	if res := authz["resource"]; len(res) != 2 || res[0] != "https://api-a.example/" || res[1] != "https://api-b.example/" {
		t.Fatalf("the authorization request named resources %v, want both (RFC 8707 §2.1)", res)
	}
	for range 3 {
		if r := br.api("GET", "/resource/a/x"); r.StatusCode != http.StatusOK {
			t.Fatalf("route A: %s %s", r.Status, r.body)
		}
		if got := a.last(); got != "https://api-a.example/" {
			t.Fatalf("API A received a token for %q", got)
		}
		if r := br.api("GET", "/resource/b/x"); r.StatusCode != http.StatusOK {
			t.Fatalf("route B: %s %s", r.Status, r.body)
		}
		if got := b.last(); got != "https://api-b.example/" {
			t.Fatalf("API B received a token for %q", got)
		}
	}
	if r := br.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"sub":"alice"`) {
		t.Fatalf("the plain route: %s %s", r.Status, r.body)
	}
	if n := e.op.Grants("refresh_token"); n != 2 {
		t.Errorf("%d refreshes for six calls on two resources, want 2 (one per resource, cached)", n)
	}
	e.scanLogs()
}

// TestResourceRefused: an IdP that refuses a resource (invalid_target) is a
// 503 for that route; the session lives on.
func TestResourceRefused(t *testing.T) {
	var op *oidctest.Provider
	a := newResourceUpstream(t, &op)
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/resource/a/", Upstream: a.URL + "/", Resource: "https://api-a.example/"})
	}, func(b *oidctest.Behavior) { b.ForgetResources = true })
	op = e.op
	br := e.browser()
	br.login("/")
	r := br.api("GET", "/resource/a/x")
	if r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
		t.Fatalf("a refused resource = %s %s, want 503", r.Status, r.body)
	}
	if r := br.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("the session did not survive a refused resource: %s", r.Status)
	}
	if !strings.Contains(e.logs.String(), "invalid_target") {
		t.Error("the log does not say the IdP refused the resource")
	}
}

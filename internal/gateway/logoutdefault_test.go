package gateway_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/moat-bff/moat/internal/config"
)

// Without oidc.post_logout_redirect_url, logout sends the browser back to
// the app: post_logout_redirect_uri is frontend_url, or public_url + "/".
func TestPostLogoutRedirectDefaultsToTheApp(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*config.Config)
		want func(e *env) string
	}{
		{"public_url", func(*config.Config) {}, func(e *env) string { return e.url + "/" }},
		{"frontend_url", func(c *config.Config) { c.FrontendURL = "http://localhost:5173/app" }, func(*env) string { return "http://localhost:5173/app" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mod)
			b := e.browser()
			b.login("/")
			r := b.get("/auth/logout")
			loc, err := url.Parse(r.Header.Get("Location"))
			if r.StatusCode != http.StatusFound || err != nil {
				t.Fatalf("logout: %s %v", r.Status, err)
			}
			if got := loc.Query().Get("post_logout_redirect_uri"); got != tc.want(e) {
				t.Fatalf("post_logout_redirect_uri = %q, want %q", got, tc.want(e))
			}
			// The OP sends the browser there.
			if r := b.get(loc.String()); r.StatusCode != http.StatusFound || r.Header.Get("Location") != tc.want(e) {
				t.Errorf("end_session: %s Location=%q", r.Status, r.Header.Get("Location"))
			}
		})
	}
}

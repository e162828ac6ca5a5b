package gateway_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
)

// Every answer says nosniff; /auth/ answers are never cached, never framed,
// send no Referer and keep no opener; the SPA gets the default CSP, which
// forbids inline script and framing, unless spa.csp says otherwise.
func TestSecurityHeaders(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><title>app</title>"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *config.Config) { c.SPA.Dir = dir })
	b := e.browser()
	b.login("/")

	authPage := map[string]string{
		"Cache-Control":              "no-store",
		"X-Frame-Options":            "DENY",
		"Referrer-Policy":            "no-referrer",
		"Cross-Origin-Opener-Policy": "same-origin",
		"Content-Security-Policy":    "default-src 'none'; frame-ancestors 'none'; form-action 'self'",
		"X-Content-Type-Options":     "nosniff",
	}
	cases := []struct {
		method, path string
		code         int
		want         map[string]string
	}{
		{"GET", "/auth/checksession", http.StatusOK, authPage},
		{"GET", "/auth/userinfo", http.StatusOK, authPage},
		{"GET", "/auth/login", http.StatusFound, authPage},
		{"GET", "/auth/callback?state=x&code=y", http.StatusFound, authPage}, // a stale callback with a session: back to the app
		{"GET", "/auth/nothing", http.StatusNotFound, authPage},
		{"GET", "/resource/api/x", http.StatusOK, map[string]string{"X-Content-Type-Options": "nosniff"}},
		{"GET", "/healthz", http.StatusOK, map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}},
		{"GET", "/", http.StatusOK, map[string]string{
			"Content-Security-Policy": config.DefaultCSP,
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
		}},
		{"POST", "/auth/logout", http.StatusOK, authPage}, // last: it ends the session
	}
	for _, c := range cases {
		r := b.api(c.method, c.path)
		if r.StatusCode != c.code {
			t.Errorf("%s %s: %s, want %d", c.method, c.path, r.Status, c.code)
		}
		for k, v := range c.want {
			if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s %s: %s is %q, want %q", c.method, c.path, k, got, v)
			}
		}
	}
	if !strings.Contains(config.DefaultCSP, "script-src 'self'") || strings.Contains(config.DefaultCSP, "unsafe-inline") ||
		!strings.Contains(config.DefaultCSP, "frame-ancestors 'none'") {
		t.Errorf("DefaultCSP is not strict: %s", config.DefaultCSP)
	}
}

package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/demo"
	"github.com/moat-bff/moat/internal/logtest"
)

// startDemo runs the demo on free ports until the test ends. Its logs are
// printed if the test fails.
func startDemo(t *testing.T, o demo.Options) *demo.System {
	t.Helper()
	logs := &logtest.Buffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := demo.Start(t.Context(), o)
	if err != nil {
		t.Fatalf("starting the demo: %v", err)
	}
	t.Cleanup(func() {
		start := time.Now()
		if err := s.Close(); err != nil {
			t.Errorf("closing the demo: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("closing the demo took %s", d)
		}
		if t.Failed() {
			t.Logf("demo logs:\n%s", logs.String())
		}
	})
	return s
}

func getJSON(t *testing.T, url string, header http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("GET %s: %d, body is not JSON: %q", url, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, body
}

func TestDemoWithoutBrowser(t *testing.T) {
	s := startDemo(t, demo.Options{AccessTokenTTL: 30 * time.Second})

	t.Run("discovery", func(t *testing.T) {
		if !strings.HasPrefix(s.IssuerURL, "http://127.0.0.1:") || strings.HasSuffix(s.IssuerURL, "/") {
			t.Fatalf("issuer URL %q", s.IssuerURL)
		}
		status, _, doc := getJSON(t, s.IssuerURL+"/.well-known/openid-configuration", nil)
		if status != http.StatusOK {
			t.Fatalf("discovery: %d", status)
		}
		if doc["issuer"] != s.IssuerURL {
			t.Errorf("issuer %q, want exactly %q", doc["issuer"], s.IssuerURL)
		}
		if doc["jwks_uri"] != s.IssuerURL+"/.well-known/jwks.json" {
			t.Errorf("jwks_uri %q", doc["jwks_uri"])
		}
		for _, k := range []string{"end_session_endpoint", "revocation_endpoint", "userinfo_endpoint"} {
			if v, _ := doc[k].(string); !strings.HasPrefix(v, s.IssuerURL+"/") {
				t.Errorf("%s = %q", k, doc[k])
			}
		}
		status, _, jwks := getJSON(t, s.IssuerURL+"/.well-known/jwks.json", nil)
		if keys, _ := jwks["keys"].([]any); status != http.StatusOK || len(keys) != 1 {
			t.Errorf("JWKS: %d %v", status, jwks)
		}
	})

	t.Run("admin listener serves metrics and guards the session API", func(t *testing.T) {
		resp, err := http.Get(s.AdminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "moat_logins_started_total") {
			t.Errorf("metrics: %d", resp.StatusCode)
		}
		if status, _, _ := getJSON(t, s.AdminURL+"/admin/sessions?sub=x", nil); status != http.StatusUnauthorized {
			t.Errorf("admin API without the token: %d", status)
		}
		if status, _, _ := getJSON(t, s.AdminURL+"/admin/sessions?sub=x", http.Header{"Authorization": {"Bearer " + s.AdminToken}}); status != http.StatusOK {
			t.Errorf("admin API with the token: %d", status)
		}
	})

	t.Run("proxied API without a session is a 401 JSON", func(t *testing.T) {
		status, h, body := getJSON(t, s.BFFURL+"/resource/api/recipe", http.Header{"X-Csrf": {"1"}})
		if status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || body["error"] == nil {
			t.Errorf("got %d %q %v", status, h.Get("Content-Type"), body)
		}
		status, _, body = getJSON(t, s.BFFURL+"/api/protected-data", http.Header{"X-Csrf": {"1"}})
		if status != http.StatusUnauthorized {
			t.Errorf("local API: got %d %v", status, body)
		}
		status, _, body = getJSON(t, s.BFFURL+"/auth/checksession", nil)
		if status != http.StatusOK || body["loggedIn"] != false {
			t.Errorf("checksession: %d %v", status, body)
		}
	})

	t.Run("the recipe API wants a valid Bearer token", func(t *testing.T) {
		status, h, body := getJSON(t, s.APIURL+"recipe", nil)
		if status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("no token: %d %q %v", status, h.Get("WWW-Authenticate"), body)
		}
		status, h, body = getJSON(t, s.APIURL+"recipe", http.Header{"Authorization": {"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}})
		if status != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("bad token: %d %q %v", status, h.Get("WWW-Authenticate"), body)
		}
	})

	t.Run("the SPA has a strict CSP", func(t *testing.T) {
		resp, err := http.Get(s.BFFURL + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET /: %d, CSP %q", resp.StatusCode, csp)
		}
		if !strings.Contains(string(page), `src="/app.js"`) {
			t.Errorf("index.html does not load app.js:\n%s", page)
		}
	})
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	o := demo.Options{AccessTokenTTL: time.Minute}
	out := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- demo.Run(ctx, o, out) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 10s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"Open      http://127.0.0.1:", `"demo"`, `"demo-password"`, "HttpOnly"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after its context ended")
	}
}

func TestOptionsAreChecked(t *testing.T) {
	for _, o := range []demo.Options{
		{CSRFMode: "cookie"},
		{FrontendOrigin: "http://127.0.0.1:5173/"},
		{AccessTokenTTL: time.Millisecond},
		{BFFPort: 70000},
	} {
		if _, err := demo.Start(t.Context(), o); err == nil {
			t.Errorf("Start(%+v) succeeded", o)
		}
	}
}

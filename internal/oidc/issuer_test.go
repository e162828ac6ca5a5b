package oidc_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// An oidc.issuer that differs from the discovery document's issuer only in
// spelling gets an error that names the exact value to configure, not
// "identity provider unavailable"; other issuers name both values.
func TestIssuerMismatchSaysWhatToSet(t *testing.T) {
	var discovered string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": discovered, "authorization_endpoint": discovered + "/authorize",
			"token_endpoint": discovered + "/token", "jwks_uri": discovered + "/jwks"})
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	cases := []struct {
		configured, discovered string
		exact                  bool // the "set oidc.issuer to exactly" hint for a spelling difference
	}{
		{"http://localhost" + port, "http://localhost" + port + "/", true},
		{"http://localhost" + port + "/", "http://localhost" + port, true},
		{"http://localhost" + port, "http://LOCALHOST" + port, true},
		{"http://localhost" + port + "/realms/x", "http://localhost" + port + "/realms/x/", true},
		{"http://localhost" + port, "https://idp.example.com", false},
		{"http://localhost" + port + "/a", "http://localhost" + port + "/b", false},
	}
	for _, tc := range cases {
		discovered = tc.discovered
		p := oidctest.New(t, redirect) // only for the client's shape
		c := newClient(t, p, func(c *oidc.Config) { c.Issuer = tc.configured })
		_, err := c.Discover(context.Background())
		if !errors.Is(err, oidc.ErrIssuerMismatch) || !errors.Is(err, oidc.ErrUnavailable) {
			t.Fatalf("%s vs %s: %v, want ErrIssuerMismatch", tc.configured, tc.discovered, err)
		}
		msg := err.Error()
		hint := `set oidc.issuer to exactly "` + tc.discovered + `"`
		if !strings.Contains(msg, hint) || strings.Contains(msg, "identity provider unavailable") || !strings.Contains(msg, tc.discovered) {
			t.Errorf("%s vs %s: %q", tc.configured, tc.discovered, msg)
		}
		if got := strings.HasPrefix(msg, "the IdP's discovery document names its issuer"); got != tc.exact {
			t.Errorf("%s vs %s: spelling-only message = %v, want %v: %q", tc.configured, tc.discovered, got, tc.exact, msg)
		}
	}
}

package hydraop_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/hydraop"
)

// TestStartRegistersTheClient: Hydra serves discovery for its issuer, and
// the client is registered as docs/providers.md shows it: the URIs given,
// back-channel logout with sid, the code and refresh grants, the scope.
func TestStartRegistersTheClient(t *testing.T) {
	op := hydraop.Start(t, hydraop.Options{
		RedirectURIs:           []string{"http://127.0.0.1:4099/auth/callback"},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:4099/"},
		BackchannelLogoutURI:   "http://127.0.0.1:4099/auth/backchannel-logout",
	})
	var disc struct {
		Issuer string `json:"issuer"`
	}
	getJSON(t, op.Issuer+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != op.Issuer {
		t.Errorf("discovery issuer %q, want %q", disc.Issuer, op.Issuer)
	}
	var c struct {
		RedirectURIs   []string `json:"redirect_uris"`
		PostLogout     []string `json:"post_logout_redirect_uris"`
		Backchannel    string   `json:"backchannel_logout_uri"`
		SessionNeeded  bool     `json:"backchannel_logout_session_required"`
		GrantTypes     []string `json:"grant_types"`
		Scope          string   `json:"scope"`
		TokenEndpoint  string   `json:"token_endpoint_auth_method"`
		ClientSecretIn string   `json:"client_secret"`
	}
	getJSON(t, op.Admin+"/admin/clients/"+op.ClientID, &c)
	if !slices.Equal(c.RedirectURIs, []string{"http://127.0.0.1:4099/auth/callback"}) || !slices.Equal(c.PostLogout, []string{"http://127.0.0.1:4099/"}) ||
		c.Backchannel != "http://127.0.0.1:4099/auth/backchannel-logout" || !c.SessionNeeded ||
		!slices.Equal(c.GrantTypes, []string{"authorization_code", "refresh_token"}) || c.Scope != hydraop.Scope ||
		c.TokenEndpoint != "client_secret_basic" {
		t.Errorf("registered client %+v", c)
	}
	if c.ClientSecretIn != "" {
		t.Error("Hydra shows the client secret after registration")
	}
	if _, err := op.Introspect(context.Background(), "not-a-token"); err != nil {
		t.Errorf("introspection: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestAvailableRefusesAnotherVersion: a hydra on PATH that is not the
// pinned release is refused with the command that builds the right one.
func TestAvailableRefusesAnotherVersion(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\necho 'Version:    v1.11.10'\n"
	if err := os.WriteFile(filepath.Join(dir, "hydra"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	err := hydraop.Available()
	if err == nil || !strings.Contains(err.Error(), "is not Hydra "+hydraop.Version) || !strings.Contains(err.Error(), "scripts/hydra") {
		t.Fatalf("Available() = %v, want a refusal naming %s and scripts/hydra", err, hydraop.Version)
	}
}

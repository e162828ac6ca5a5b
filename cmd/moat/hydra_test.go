package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/hydraop"
)

// TestInitAndCheckAgainstHydra: moat init reads Ory Hydra's discovery
// document and reports what it offers (no PAR, no RFC 9207 iss; revocation,
// RP-initiated and back-channel logout, refresh tokens) and recognises it,
// writing docs/providers.md's setting for Hydra's logout tokens; moat check
// accepts the configuration, warns about the setting, and names it when it
// is off.
func TestInitAndCheckAgainstHydra(t *testing.T) {
	hydraop.Require(t)
	t.Setenv("MOAT_OIDC_CLIENT_SECRET", "")
	os.Unsetenv("MOAT_OIDC_CLIENT_SECRET")
	public := "http://127.0.0.1:4012"
	op := hydraop.Start(t, hydraop.Options{
		RedirectURIs: []string{public + "/auth/callback"}, PostLogoutRedirectURIs: []string{public + "/"},
		BackchannelLogoutURI: public + "/auth/backchannel-logout",
	})
	dir := t.TempDir()
	out := filepath.Join(dir, "moat.yaml")
	stdout, stderr, err := runInit(t, "", false, "--issuer", op.Issuer, "--client-id", op.ClientID,
		"--client-secret-file", secretFile(t, dir, op.ClientSecret), "--public-url", public,
		"--upstream", "http://127.0.0.1:4013/", "--out", out)
	if err != nil {
		t.Fatalf("init: %v\n%s%s", err, stdout, stderr)
	}
	for _, f := range []string{"no   pushed authorization requests", "yes  PKCE S256", "yes  token revocation", "yes  RP-initiated logout",
		"yes  back-channel logout", "yes  refresh tokens", "no   authorization response iss"} {
		if !strings.Contains(stdout, f) {
			t.Errorf("init does not report %q:\n%s", f, stdout)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n  insecure_legacy_logout_tokens: true\n") {
		t.Fatalf("init recognises Hydra but does not write oidc.insecure_legacy_logout_tokens:\n%s", b)
	}
	cout, cerr, err := runCLI("check", "--config", out)
	if err != nil {
		t.Fatalf("check: %v\n%s%s", err, cout, cerr)
	}
	if !strings.Contains(cout+cerr, "oidc.insecure_legacy_logout_tokens is set") {
		t.Errorf("check does not warn about oidc.insecure_legacy_logout_tokens:\n%s%s", cout, cerr)
	}
	// Without the option, check names it.
	if err := os.WriteFile(out, []byte(strings.Replace(string(b), "insecure_legacy_logout_tokens: true", "insecure_legacy_logout_tokens: false", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cout, cerr, err = runCLI("check", "--config", out)
	if err != nil || !strings.Contains(cout, "warning: idp: oidc.insecure_legacy_logout_tokens: the provider looks like Ory Hydra") {
		t.Errorf("check without the option: %v; does not name it:\n%s%s", err, cout, cerr)
	}
}

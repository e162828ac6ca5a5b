package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// `moat check` prints the URIs to register at the IdP, the post-logout
// redirect URI included, whose default is frontend_url or public_url + "/".
func TestCheckPrintsTheURIsToRegister(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	cases := []struct{ frontend, postLogout, want string }{
		{"", "", "http://127.0.0.1:4001/"},
		{"http://127.0.0.1:5173/app", "", "http://127.0.0.1:5173/app"},
		{"http://127.0.0.1:5173/app", "http://127.0.0.1:4001/bye", "http://127.0.0.1:4001/bye"},
	}
	for _, tc := range cases {
		cfg := fmt.Sprintf(`
public_url: "http://127.0.0.1:4001"
oidc: {issuer: %q, client_id: "c", client_secret: "s", post_logout_redirect_url: %q}
session: {keys: [%q]}
`, op.Issuer, tc.postLogout, session.NewKey())
		if tc.frontend != "" {
			cfg += fmt.Sprintf("frontend_url: %q\ncors: {allowed_origins: [%q]}\n", tc.frontend, "http://127.0.0.1:5173")
		}
		out, stderr, err := runCLI("check", "--config", writeFile(t, cfg))
		if err != nil {
			t.Fatalf("check: %v\n%s%s\n%s", err, out, stderr, cfg)
		}
		for _, line := range []string{
			"register at the IdP for client c:\n",
			"  redirect URI:                  http://127.0.0.1:4001/auth/callback\n",
			"  post-logout redirect URI:      " + tc.want + "\n",
			"  back-channel logout URI:       http://127.0.0.1:4001/auth/backchannel-logout\n",
		} {
			if !strings.Contains(out, line) {
				t.Errorf("%+v: output lacks %q:\n%s", tc, line, out)
			}
		}
	}
}

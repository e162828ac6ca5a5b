package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

func TestAuthParams(t *testing.T) {
	base := fmt.Sprintf(goodYAML, session.NewKey())
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error; none: accepted
	}{
		{"auth0 audience", "  auth_params: {audience: \"https://api.example.com\"}\n", nil},
		{"google offline", "  auth_params: {access_type: offline, prompt: consent}\n", nil},
		{"state", "  auth_params: {state: fixed}\n", []string{"oidc.auth_params.state:", "moat makes a fresh state"}},
		{"nonce", "  auth_params: {nonce: fixed}\n", []string{"oidc.auth_params.nonce:"}},
		{"pkce", "  auth_params: {code_challenge: x, code_challenge_method: plain}\n", []string{"oidc.auth_params.code_challenge:", "oidc.auth_params.code_challenge_method:"}},
		{"redirect", "  auth_params: {redirect_uri: \"https://evil.example\"}\n", []string{"oidc.auth_params.redirect_uri:", "public_url"}},
		{"client id", "  auth_params: {client_id: other}\n", []string{"oidc.auth_params.client_id:"}},
		{"response type", "  auth_params: {response_type: token}\n", []string{"oidc.auth_params.response_type:"}},
		{"response mode", "  auth_params: {response_mode: form_post}\n", []string{"oidc.auth_params.response_mode:"}},
		{"scope", "  auth_params: {scope: \"openid admin\"}\n", []string{"oidc.auth_params.scope:", "oidc.scopes"}},
		{"case", "  auth_params: {STATE: fixed}\n", []string{"oidc.auth_params.STATE:"}},
		{"max_age", "  auth_params: {max_age: \"0\"}\n", []string{"oidc.auth_params.max_age:", "/auth/login"}},
		{"acr", "  auth_params: {acr_values: gold}\n", []string{"oidc.auth_params.acr_values:", "oidc.acr_values"}},
		{"request_uri", "  auth_params: {request_uri: \"urn:x\"}\n", []string{"oidc.auth_params.request_uri:", "oidc.par"}},
		{"prompt none", "  auth_params: {prompt: none}\n", []string{"oidc.auth_params.prompt:"}},
		{"empty value", "  auth_params: {audience: \"\"}\n", []string{"oidc.auth_params.audience:"}},
		{"bad name", "  auth_params: {\"a b\": x}\n", []string{"oidc.auth_params:", `"a b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(base, "  client_secret: \"s3cr3t\"\n", "  client_secret: \"s3cr3t\"\n"+tc.yaml, 1)
			cfg, err := Load(writeConfig(t, body), noEnv)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if len(cfg.OIDC.AuthParams) == 0 {
					t.Fatal("auth_params not decoded")
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

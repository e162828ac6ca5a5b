package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// TestCheckReportsCapabilitiesDiscoveryLacks is issue 19 item 5: for every
// configured capability the provider's discovery document lacks, moat
// check fails (when every login would fail) or warns naming the key.
func TestCheckReportsCapabilitiesDiscoveryLacks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		oidc     string // extra oidc keys, YAML flow
		mutate   func(doc map[string]any)
		behavior func(*oidctest.Behavior)
		fail     string // an error line check must print; "" passes
		warn     []string
	}{
		{name: "full provider, default config"},
		{name: "par required without endpoint", oidc: `par: required`,
			behavior: func(b *oidctest.Behavior) { b.PAR = false },
			fail:     "oidc.par: required, but the provider's discovery document has no pushed_authorization_request_endpoint"},
		{name: "no code flow", mutate: func(d map[string]any) { d["response_types_supported"] = []string{"id_token"} },
			fail: "oidc.issuer: the provider's response_types_supported [id_token] lacks code"},
		{name: "no ID token algorithm moat verifies", mutate: func(d map[string]any) { d["id_token_signing_alg_values_supported"] = []string{"HS256"} },
			fail: `oidc.issuer: the provider's id_token_signing_alg_values_supported ["HS256"] has no algorithm moat verifies`},
		{name: "acr value not supported", oidc: `acr_values: ["urn:example:mfa"]`,
			mutate: func(d map[string]any) { d["acr_values_supported"] = []string{"urn:example:pwd"} },
			warn:   []string{"oidc.acr_values: urn:example:mfa is not in the provider's acr_values_supported [urn:example:pwd]"}},
		{name: "acr values, none advertised", oidc: `acr_values: ["urn:example:mfa"]`,
			warn: []string{"oidc.acr_values: the provider's discovery document has no acr_values_supported"}},
		{name: "acr value supported", oidc: `acr_values: ["urn:example:mfa"]`,
			mutate: func(d map[string]any) { d["acr_values_supported"] = []string{"urn:example:mfa"} }},
		{name: "scope not supported", oidc: `scopes: [openid, profile, "orders:read"]`,
			mutate: func(d map[string]any) { d["scopes_supported"] = []string{"openid", "profile", "email"} },
			warn:   []string{"oidc.scopes: orders:read is not in the provider's scopes_supported"}},
		{name: "client auth method not supported", oidc: `client_auth_method: client_secret_post`,
			mutate: func(d map[string]any) { d["token_endpoint_auth_methods_supported"] = []string{"client_secret_basic"} },
			warn:   []string{"oidc.client_auth_method: client_secret_post is not in the provider's token_endpoint_auth_methods_supported [client_secret_basic]"}},
		{name: "DPoP, ES256 offered", oidc: `dpop: true`, behavior: func(b *oidctest.Behavior) { b.DPoP = true }},
		{name: "DPoP, proof algorithms not named", oidc: `dpop: true`,
			mutate: func(d map[string]any) { delete(d, "dpop_signing_alg_values_supported") },
			warn:   []string{"oidc.dpop: the provider's discovery document has no dpop_signing_alg_values_supported"}},
		{name: "DPoP without ES256", oidc: `dpop: true`,
			mutate: func(d map[string]any) { d["dpop_signing_alg_values_supported"] = []string{"PS256"} },
			fail:   `oidc.dpop: the provider's dpop_signing_alg_values_supported ["PS256"] lacks ES256`},
		{name: "no back-channel logout", mutate: func(d map[string]any) { d["backchannel_logout_supported"] = false },
			warn: []string{"logout: the provider's discovery document does not set backchannel_logout_supported"}},
		{name: "no end_session_endpoint", behavior: func(b *oidctest.Behavior) { b.NoEndSession = true },
			warn: []string{"logout: the provider has no end_session_endpoint (RP-Initiated Logout)"}},
		{name: "no revocation_endpoint", behavior: func(b *oidctest.Behavior) { b.NoRevocation = true },
			warn: []string{"logout: the provider has no revocation_endpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
			op.Set(func(b *oidctest.Behavior) {
				b.MutateDiscovery = tc.mutate
				if tc.behavior != nil {
					tc.behavior(b)
				}
			})
			path := writeFile(t, `
public_url: "http://127.0.0.1:4001"
oidc: {issuer: "`+op.Issuer+`", client_id: "`+op.ClientID+`", client_secret: "`+op.ClientSecret+`", `+tc.oidc+`}
session: {keys: ["`+session.NewKey()+`"]}
`)
			out, stderr, err := runCLI("check", "--config", path)
			if tc.fail != "" {
				if !errors.Is(err, errReported) || !strings.Contains(stderr, "  - "+tc.fail) {
					t.Fatalf("check does not fail with %q: %v\n%s%s", tc.fail, err, out, stderr)
				}
				return
			}
			if err != nil || !strings.HasSuffix(out, ": OK\n") {
				t.Fatalf("check: %v\n%s%s", err, out, stderr)
			}
			var warnings []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "warning: idp: ") {
					warnings = append(warnings, l)
				}
			}
			if len(warnings) != len(tc.warn) {
				t.Errorf("check warns %d times, want %d:\n%s", len(warnings), len(tc.warn), out)
			}
			for _, w := range tc.warn {
				if !strings.Contains(out, "warning: idp: "+w) {
					t.Errorf("check does not warn %q:\n%s", w, out)
				}
			}
		})
	}
}

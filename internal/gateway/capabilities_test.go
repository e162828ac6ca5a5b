package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// A configuration that asks for what the provider's discovery document
// says it cannot do (oidc.par: required without a PAR endpoint, or off when
// the provider requires PAR) makes every login fail: /readyz is not ready
// and says why, and Check reports it by key, where both said OK before.
func TestReadyzAndCheckReportMissingCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		par  string
		op   func(*oidctest.Behavior)
		want string
	}{
		{"required without endpoint", "required", func(b *oidctest.Behavior) { b.PAR = false }, "oidc.par: required, but the provider's discovery document has no pushed_authorization_request_endpoint"},
		{"off but required by the provider", "off", func(b *oidctest.Behavior) { b.RequirePAR = true }, "oidc.par: off, but the provider requires pushed authorization requests"},
		{"required and offered", "required", func(b *oidctest.Behavior) { b.PAR = true }, ""},
		{"no code flow", "auto", func(b *oidctest.Behavior) {
			b.MutateDiscovery = func(doc map[string]any) { doc["response_types_supported"] = []string{"id_token"} }
		}, "oidc.issuer: the provider's response_types_supported [id_token] lacks code"},
		{"no ID token algorithm moat verifies", "auto", func(b *oidctest.Behavior) {
			b.MutateDiscovery = func(doc map[string]any) { doc["id_token_signing_alg_values_supported"] = []string{"HS256"} }
		}, `oidc.issuer: the provider's id_token_signing_alg_values_supported ["HS256"] has no algorithm moat verifies`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.OIDC.PAR = tc.par }, tc.op)
			b := e.browser()
			r := b.get("/readyz")
			code, checks := adminReadyz(t, e.gw)
			idp := checks["idp"]
			err := e.gw.Check(t.Context())
			if tc.want == "" {
				if r.StatusCode != http.StatusOK || code != http.StatusOK || idp != "ok" || err != nil {
					t.Fatalf("readyz %s, admin %d %q, check %v", r.Status, code, idp, err)
				}
				return
			}
			if r.StatusCode != http.StatusServiceUnavailable || code != http.StatusServiceUnavailable || !strings.Contains(idp, tc.want) {
				t.Errorf("readyz: %s, admin %d idp=%q, want %q", r.Status, code, idp, tc.want)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check: %v", err)
			}
		})
	}
}

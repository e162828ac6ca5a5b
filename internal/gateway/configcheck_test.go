package gateway_test

import (
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
)

// validateOIDC validates the smallest configuration around o (issuer and
// client ID filled in).
func validateOIDC(o config.OIDC) error {
	o.Issuer, o.ClientID = "http://127.0.0.1:9", "c"
	c := &config.Config{Listen: "127.0.0.1:0", PublicURL: "http://127.0.0.1:4001", OIDC: o}
	c.SetDefaults()
	return c.Validate()
}

// validateRoute validates the smallest configuration with r as its only
// route (prefix /api/, upstream filled in).
func validateRoute(r config.Route) error {
	r.Prefix, r.Upstream = "/api/", "http://127.0.0.1:9/"
	c := &config.Config{Listen: "127.0.0.1:0", PublicURL: "http://127.0.0.1:4001",
		OIDC: config.OIDC{Issuer: "http://127.0.0.1:9", ClientID: "c", ClientSecret: "s"}, Routes: []config.Route{r}}
	c.SetDefaults()
	return c.Validate()
}

// wantConfigErr fails t unless err contains want, or is nil when want is "".
func wantConfigErr(t *testing.T, what any, err error, want string) {
	t.Helper()
	if want == "" && err != nil {
		t.Errorf("Validate(%+v) = %v, want it valid", what, err)
	}
	if want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
		t.Errorf("Validate(%+v) = %v, want %q", what, err, want)
	}
}

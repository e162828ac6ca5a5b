package onboard

import (
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc"
)

// full is a provider that supports everything moat uses.
func full(issuer string) oidc.Metadata {
	return oidc.Metadata{
		Issuer: issuer, EndSessionEndpoint: issuer + "/logout", RevocationEndpoint: issuer + "/revoke",
		CodeChallengeMethods: []string{"S256"}, TokenEndpointAuthMethods: []string{"client_secret_basic", "client_secret_post"},
		IssParameterSupported: true, PAREndpoint: issuer + "/par", BackchannelLogoutSupported: true,
		ScopesSupported: []string{"openid", "profile", "email", "offline_access"}, GrantTypesSupported: []string{"authorization_code", "refresh_token"},
	}
}

func cfgWith(mod func(*config.Config)) *config.Config {
	c := &config.Config{OIDC: config.OIDC{Scopes: []string{"openid", "profile", "email", "offline_access"}, ClientAuthMethod: "client_secret_basic"}}
	c.Routes = []config.Route{{Prefix: "/api/", Token: config.TokenUser}}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestQuirks(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta oidc.Metadata
		cfg  *config.Config
		want []string // substrings, each in some warning; nil: no warnings
	}{
		{"full provider, default config", full("https://idp.example.com"), cfgWith(nil), nil},
		{"google with offline_access and no access_type", func() oidc.Metadata {
			m := full("https://accounts.google.com")
			m.EndSessionEndpoint, m.BackchannelLogoutSupported, m.ScopesSupported = "", false, []string{"openid", "email", "profile"}
			return m
		}(), cfgWith(nil), []string{"Google does not accept the offline_access scope", "access_type: offline"}},
		{"google configured as init writes it", func() oidc.Metadata {
			m := full("https://accounts.google.com")
			m.ScopesSupported = []string{"openid", "email", "profile"}
			return m
		}(), cfgWith(func(c *config.Config) {
			c.OIDC.Scopes = []string{"openid", "profile", "email"}
			c.OIDC.AuthParams = map[string]string{"access_type": "offline", "prompt": "consent"}
		}), nil},
		{"entra v1", full("https://sts.windows.net/tid/"), cfgWith(nil), []string{"Entra ID v1.0 issuer"}},
		{"entra v2 front-channel only without offline_access", func() oidc.Metadata {
			m := full("https://login.microsoftonline.com/tid/v2.0")
			m.BackchannelLogoutSupported, m.FrontchannelLogoutSupported, m.RevocationEndpoint = false, true, ""
			return m
		}(), cfgWith(func(c *config.Config) { c.OIDC.Scopes = []string{"openid", "profile"} }),
			[]string{"Entra ID issues refresh tokens only for the offline_access scope", "only front-channel logout", "no revocation_endpoint"}},
		{"cognito", func() oidc.Metadata {
			m := full("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc")
			m.EndSessionEndpoint, m.RevocationEndpoint, m.BackchannelLogoutSupported = "", "", false
			return m
		}(), cfgWith(func(c *config.Config) { c.OIDC.PostLogoutRedirectURL = "https://app.example.com/" }),
			[]string{"Amazon Cognito's logout endpoint", "no end_session_endpoint, so it is never used"}},
		{"auth0 without audience", full("https://tenant.eu.auth0.com/"), cfgWith(nil), []string{"oidc.auth_params: without an audience"}},
		{"auth0 with audience", full("https://tenant.eu.auth0.com/"),
			cfgWith(func(c *config.Config) { c.OIDC.AuthParams = map[string]string{"audience": "https://api"} }), nil},
		{"hydra without the legacy logout tokens option", func() oidc.Metadata {
			m := full("https://hydra.example.com")
			m.EndSessionEndpoint = "https://hydra.example.com/oauth2/sessions/logout"
			return m
		}(), cfgWith(nil), []string{"oidc.insecure_legacy_logout_tokens: the provider looks like Ory Hydra"}},
		{"hydra with the option", func() oidc.Metadata {
			m := full("https://hydra.example.com")
			m.EndSessionEndpoint = "https://hydra.example.com/oauth2/sessions/logout"
			return m
		}(), cfgWith(func(c *config.Config) { c.OIDC.InsecureLegacyLogoutTokens = true }), nil},
		{"keycloak refreshes without offline_access", full("https://kc.example.com/realms/main"),
			cfgWith(func(c *config.Config) { c.OIDC.Scopes = []string{"openid", "profile", "email"} }), nil},
		{"offline_access listed but not asked for", full("https://idp.example.com"),
			cfgWith(func(c *config.Config) { c.OIDC.Scopes = []string{"openid"} }), []string{"does not ask for it"}},
		{"no refresh grant, unknown scope, auth method", func() oidc.Metadata {
			m := full("https://idp.example.com")
			m.GrantTypesSupported = []string{"authorization_code"}
			m.TokenEndpointAuthMethods = []string{"private_key_jwt"}
			return m
		}(), cfgWith(func(c *config.Config) { c.OIDC.Scopes = append(c.OIDC.Scopes, "orders:read") }),
			[]string{"lacks refresh_token", "orders:read is not in", "client_secret_basic is not in"}},
		{"mTLS without mtls_endpoint_aliases", func() oidc.Metadata {
			m := full("https://idp.example.com")
			m.TokenEndpointAuthMethods = []string{"tls_client_auth"}
			return m
		}(), cfgWith(func(c *config.Config) { c.OIDC.ClientAuthMethod = "tls_client_auth" }),
			[]string{"oidc.client_auth_method: tls_client_auth, but the provider's discovery document has no mtls_endpoint_aliases"}},
		{"token exchange not advertised", full("https://idp.example.com"), cfgWith(func(c *config.Config) {
			c.Routes = append(c.Routes, config.Route{Prefix: "/x/", Token: config.TokenUser, TokenExchange: &config.TokenExchange{Audience: "api"}})
		}), []string{"routes[1].token_exchange: the provider's grant_types_supported [authorization_code refresh_token] lacks urn:ietf:params:oauth:grant-type:token-exchange"}},
		{"token exchange advertised", func() oidc.Metadata {
			m := full("https://idp.example.com")
			m.GrantTypesSupported = append(m.GrantTypesSupported, oidc.GrantTokenExchange)
			return m
		}(), cfgWith(func(c *config.Config) {
			c.Routes = append(c.Routes, config.Route{Prefix: "/x/", Token: config.TokenUser, TokenExchange: &config.TokenExchange{Audience: "api"}})
		}), nil},
		{"DPoP with Bearer-only routes", func() oidc.Metadata {
			m := full("https://idp.example.com")
			m.DPoPSigningAlgs = []string{"ES256"}
			return m
		}(), cfgWith(func(c *config.Config) {
			c.OIDC.DPoP = true
			c.Routes = append(c.Routes, config.Route{Prefix: "/c/", Token: config.TokenClient}, config.Route{Prefix: "/u/", Token: config.TokenUser})
		}), []string{"routes[1]: with oidc.dpop, client-credentials and token-exchange requests still carry no DPoP proof"}},
		{"DPoP with proof algorithms not named", full("https://idp.example.com"), cfgWith(func(c *config.Config) { c.OIDC.DPoP = true }),
			[]string{"oidc.dpop: the provider's discovery document has no dpop_signing_alg_values_supported"}},
		{"mTLS with mtls_endpoint_aliases", func() oidc.Metadata {
			m := full("https://idp.example.com")
			m.TokenEndpointAuthMethods = []string{"tls_client_auth"}
			m.MTLSEndpointAliases = map[string]string{"token_endpoint": "https://mtls.idp.example.com/token"}
			return m
		}(), cfgWith(func(c *config.Config) { c.OIDC.ClientAuthMethod = "tls_client_auth" }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Quirks(tc.meta, tc.cfg)
			if tc.want == nil && len(got) > 0 {
				t.Fatalf("unexpected warnings: %q", got)
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no warning says %q; got:\n%s", w, all)
				}
			}
		})
	}
}

func TestConfigForGoogle(t *testing.T) {
	m := full("https://accounts.google.com")
	m.ScopesSupported = []string{"openid", "email", "profile"}
	got := Config(Answers{Issuer: m.Issuer, ClientID: "c", PublicURL: "https://app.example.com", KeysFile: "/k", Listen: ":4001"}, m)
	for _, w := range []string{`scopes: ["openid", "profile", "email"]`, "auth_params:", `access_type: "offline"`, `prompt: "consent"`} {
		if !strings.Contains(got, w) {
			t.Errorf("config lacks %s:\n%s", w, got)
		}
	}
}

func TestScopes(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://idp.example.com":            "openid profile email offline_access",
		"https://accounts.google.com":        "openid profile email",
		"https://kc.example.com/realms/main": "openid profile email",
	} {
		if got := strings.Join(Scopes(full(issuer)), " "); got != want {
			t.Errorf("%s: scopes %q, want %q", issuer, got, want)
		}
	}
}

package onboard

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/moat-bff/moat/internal/oidc"
)

// Answers are what `moat init` asked for.
type Answers struct {
	Issuer   string
	ClientID string
	// ClientSecretFile holds the client secret; empty when it comes from
	// MOAT_OIDC_CLIENT_SECRET.
	ClientSecretFile string
	// PublicURL is moat's origin as browsers see it.
	PublicURL string
	// FrontendURL is the SPA's origin when it is not moat's (a dev server).
	FrontendURL string
	// Upstream is the API moat proxies under Prefix; none when empty.
	Upstream string
	Prefix   string
	// KeysFile holds the session key.
	KeysFile string
	// Listen is the listener address.
	Listen string
	// CAFile holds extra PEM roots for the provider's TLS certificate.
	CAFile string
}

// Scopes are the scopes init configures for the provider m: openid,
// profile and email, and offline_access when the provider lists it (and is
// not Google, which refuses it, or Keycloak, which refreshes without it).
func Scopes(m oidc.Metadata) []string {
	s := []string{"openid", "profile", "email"}
	offline := slices.Contains(m.ScopesSupported, "offline_access") || len(m.ScopesSupported) == 0
	if k := kind(m.Issuer); offline && k != kindGoogle && k != kindKeycloak {
		s = append(s, "offline_access")
	}
	return s
}

// AuthParams are the authorization parameters init configures: Google's
// access_type=offline and prompt=consent, without which it issues no
// refresh token.
func AuthParams(m oidc.Metadata) map[string]string {
	if kind(m.Issuer) == kindGoogle {
		return map[string]string{"access_type": "offline", "prompt": "consent"}
	}
	return nil
}

// landing is where the browser goes after logout at the provider.
func (a Answers) landing() string {
	if a.FrontendURL != "" {
		return strings.TrimSuffix(a.FrontendURL, "/") + "/"
	}
	return strings.TrimSuffix(a.PublicURL, "/") + "/"
}

func (a Answers) at(path string) string {
	u, err := url.Parse(a.PublicURL)
	if err != nil {
		return a.PublicURL + path
	}
	return u.JoinPath(path).String()
}

// Registration lists what to register at the provider for this moat, one
// "name: value" per line.
func Registration(a Answers, m oidc.Metadata) []string {
	method := "client_secret_basic"
	if len(m.TokenEndpointAuthMethods) > 0 && !slices.Contains(m.TokenEndpointAuthMethods, method) && slices.Contains(m.TokenEndpointAuthMethods, "client_secret_post") {
		method = "client_secret_post"
	}
	r := []string{
		"client type: confidential (web application), with a client secret",
		"token endpoint authentication: " + method,
		"grant types: authorization_code, refresh_token",
		"redirect URI (exact): " + a.at("/auth/callback"),
	}
	if m.EndSessionEndpoint != "" {
		r = append(r, "post-logout redirect URI: "+a.landing())
	}
	if m.BackchannelLogoutSupported {
		r = append(r, "back-channel logout URI: "+a.at("/auth/backchannel-logout")+" (session required: yes)")
	}
	if a.FrontendURL != "" {
		r = append(r, "allowed web origin / CORS: none needed (the browser talks to moat, never to the provider's token endpoint)")
	}
	return r
}

// Config is a commented moat.yaml for these answers and provider.
func Config(a Answers, m oidc.Metadata) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	q := strconv.Quote
	p("# moat configuration written by `moat init` for %s.", a.Issuer)
	p("# Every key is described in README.md (Configuration); check it with:")
	p("#   moat check --config <this file>")
	p("")
	p("# The browser-facing listener, and moat's origin as browsers see it. The")
	p("# OAuth redirect_uri is public_url + /auth/callback.")
	p("listen: %s", q(a.Listen))
	p("public_url: %s", q(a.PublicURL))
	if a.FrontendURL != "" {
		p("# The SPA's own origin (a dev server or CDN): where the browser lands")
		p("# after login and logout, and the origin allowed to call moat (CORS).")
		p("frontend_url: %s", q(a.FrontendURL))
		p("cors:")
		p("  allowed_origins: [%s]", q(strings.TrimSuffix(a.FrontendURL, "/")))
	}
	p("")
	p("oidc:")
	p("  issuer: %s", q(a.Issuer))
	p("  client_id: %s", q(a.ClientID))
	if a.ClientSecretFile != "" {
		p("  # The client secret is read from this file (keep it mode 0600).")
		p("  client_secret_file: %s", q(a.ClientSecretFile))
	} else {
		p("  # The client secret comes from the environment: MOAT_OIDC_CLIENT_SECRET.")
	}
	method := "client_secret_basic"
	if len(m.TokenEndpointAuthMethods) > 0 && !slices.Contains(m.TokenEndpointAuthMethods, method) && slices.Contains(m.TokenEndpointAuthMethods, "client_secret_post") {
		method = "client_secret_post"
	}
	p("  client_auth_method: %s", method)
	if a.CAFile != "" {
		p("  # Extra roots for the provider's TLS certificate (besides the system's).")
		p("  ca_file: %s", q(a.CAFile))
	}
	scopes := Scopes(m)
	qs := make([]string, len(scopes))
	for i, s := range scopes {
		qs[i] = q(s)
	}
	if slices.Contains(scopes, "offline_access") {
		p("  # offline_access asks for a refresh token, so sessions outlive one access token.")
	}
	p("  scopes: [%s]", strings.Join(qs, ", "))
	if ap := AuthParams(m); len(ap) > 0 {
		p("  # Google issues a refresh token only with access_type=offline, and to a")
		p("  # returning user only with prompt=consent.")
		p("  auth_params:")
		keys := make([]string, 0, len(ap))
		for k := range ap {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p("    %s: %s", k, q(ap[k]))
		}
	}
	if m.PAREndpoint != "" {
		p("  # The provider offers pushed authorization requests (RFC 9126): auto uses them.")
	} else {
		p("  # The provider offers no pushed authorization requests (RFC 9126).")
	}
	p("  par: auto")
	if LooksLikeHydra(m) && m.BackchannelLogoutSupported {
		p("  # Ory Hydra's back-channel logout tokens are typed JWT and carry no exp")
		p("  # (Back-Channel Logout drafts before 2022); without this moat refuses them.")
		p("  insecure_legacy_logout_tokens: true")
	}
	if m.EndSessionEndpoint != "" {
		p("  # After logout at the provider the browser returns here; register it there.")
		p("  post_logout_redirect_url: %s", q(a.landing()))
	} else {
		p("  # The provider has no end_session_endpoint: logout ends moat's session only.")
	}
	p("")
	p("session:")
	p("  # memory loses sessions on restart; use bolt:///path, redis://... or")
	p("  # postgres://... for real deployments (README.md, Session stores).")
	p("  store: memory")
	p("  # Session keys (AES-256-GCM), one per line; the first seals. Keep 0600.")
	p("  keys_file: %s", q(a.KeysFile))
	if a.Upstream != "" {
		p("")
		p("# Browser calls to %s are forwarded to %s with the user's access token.", a.Prefix, a.Upstream)
		p("routes:")
		p("  - prefix: %s", q(a.Prefix))
		p("    upstream: %s", q(a.Upstream))
	}
	return b.String()
}

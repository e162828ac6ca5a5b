// Package onboard helps connect moat to an OpenID Provider: it reports
// what the provider's discovery document (OIDC Discovery 1.0, RFC 8414)
// says it supports, detects the provider quirks that change how moat must
// be configured, writes a commented starting configuration, and lists the
// URIs to register at the provider. `moat init` and `moat check` use it.
package onboard

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc"
)

// Feature is one capability a provider advertises, or not.
type Feature struct {
	Name string // e.g. "pushed authorization requests (RFC 9126)"
	OK   bool
	// Effect says what it means for moat, either way.
	Effect string
}

// Features lists what moat can use of the provider's metadata.
func Features(m oidc.Metadata) []Feature {
	refresh := len(m.GrantTypesSupported) == 0 || slices.Contains(m.GrantTypesSupported, "refresh_token")
	offline := slices.Contains(m.ScopesSupported, "offline_access")
	refreshEffect := "moat refreshes access tokens in the background"
	switch {
	case !refresh:
		refreshEffect = "grant_types_supported lacks refresh_token: a session ends when its access token expires"
	case offline:
		refreshEffect += "; the offline_access scope is listed, and most providers issue refresh tokens only for it"
	case len(m.GrantTypesSupported) == 0:
		refreshEffect = "grant_types_supported is not advertised; refresh tokens are likely but not promised"
	}
	return []Feature{
		{"pushed authorization requests (RFC 9126)", m.PAREndpoint != "",
			pick(m.PAREndpoint != "", "oidc.par: auto pushes every authorization request", "requests travel in the browser's URL (still with PKCE, state and nonce)")},
		{"PKCE S256 (RFC 7636)", slices.Contains(m.CodeChallengeMethods, "S256"),
			pick(slices.Contains(m.CodeChallengeMethods, "S256"), "moat always sends an S256 challenge", "not advertised; moat sends it anyway and relies on state and nonce as well")},
		{"token revocation (RFC 7009)", m.RevocationEndpoint != "",
			pick(m.RevocationEndpoint != "", "logout revokes the refresh token at the provider", "logout cannot revoke the refresh token; it stays valid at the provider until it expires")},
		{"RP-initiated logout (end_session_endpoint)", m.EndSessionEndpoint != "",
			pick(m.EndSessionEndpoint != "", "logout also ends the provider's session", "logout ends moat's session only; the provider's session stays")},
		{"back-channel logout", m.BackchannelLogoutSupported,
			pick(m.BackchannelLogoutSupported, "a logout at the provider ends moat's sessions (register the back-channel URI)", "a logout at the provider does not reach moat; sessions end on their own timeouts")},
		{"refresh tokens", refresh, refreshEffect},
		{"authorization response iss (RFC 9207)", m.IssParameterSupported,
			pick(m.IssParameterSupported, "moat requires and checks iss in every authorization response", "not advertised; moat checks iss when present")},
	}
}

func pick(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

// provider kinds recognised from the issuer URL, for quirks discovery does
// not show.
const (
	kindGoogle  = "google"
	kindEntraV1 = "entra-v1"
	kindEntra   = "entra"
	kindCognito = "cognito"
	kindAuth0   = "auth0"
	// Keycloak lists offline_access, but its refresh tokens do not need it:
	// the scope asks for an offline token that outlives the SSO session.
	kindKeycloak = "keycloak"
)

// LooksLikeHydra reports whether m is Ory Hydra's (or Ory Network's, which
// runs it): its end_session_endpoint is /oauth2/sessions/logout, a path no
// other provider here uses. Hydra 2.x signs back-channel logout tokens as the
// drafts before 2022 had them (typ JWT, no exp), which moat refuses unless
// oidc.insecure_legacy_logout_tokens is set (docs/providers.md).
func LooksLikeHydra(m oidc.Metadata) bool {
	u, err := url.Parse(m.EndSessionEndpoint)
	return err == nil && strings.HasSuffix(u.Path, "/oauth2/sessions/logout")
}

func kind(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case host == "accounts.google.com":
		return kindGoogle
	case host == "sts.windows.net":
		return kindEntraV1
	case host == "login.microsoftonline.com" && !strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/v2.0"):
		return kindEntraV1
	case host == "login.microsoftonline.com" || strings.HasSuffix(host, ".ciamlogin.com"):
		return kindEntra
	case strings.HasPrefix(host, "cognito-idp.") && strings.HasSuffix(host, ".amazonaws.com"):
		return kindCognito
	case strings.HasSuffix(host, ".auth0.com"):
		return kindAuth0
	case strings.Contains(u.Path, "/realms/"):
		return kindKeycloak
	}
	return ""
}

// Quirks returns warnings about how cfg meets the provider described by m:
// known provider quirks and settings the metadata shows will not work as
// the configuration expects. Each names the key to change.
func Quirks(m oidc.Metadata, cfg *config.Config) []string {
	var w []string
	scopes := cfg.OIDC.Scopes
	wantsOffline := slices.Contains(scopes, "offline_access")
	k := kind(m.Issuer)
	switch k {
	case kindGoogle:
		if wantsOffline {
			w = append(w, "oidc.scopes: Google does not accept the offline_access scope; remove it and set oidc.auth_params {access_type: offline, prompt: consent} for refresh tokens")
		}
		if cfg.OIDC.AuthParams["access_type"] != "offline" {
			w = append(w, "oidc.auth_params: Google issues a refresh token only with access_type: offline (and, for a user who consented before, prompt: consent); without it sessions end when the access token expires (1 hour)")
		}
	case kindEntraV1:
		w = append(w, "oidc.issuer: this is a Microsoft Entra ID v1.0 issuer; use the v2.0 one, https://login.microsoftonline.com/<tenant-id>/v2.0")
	case kindEntra:
		if !wantsOffline {
			w = append(w, "oidc.scopes: Microsoft Entra ID issues refresh tokens only for the offline_access scope; add it")
		}
	case kindCognito:
		w = append(w, "logout: Amazon Cognito's logout endpoint (https://<your-domain>/logout?client_id=...&logout_uri=...) is not in its discovery document and is not OpenID RP-initiated logout, so moat's logout ends moat's session only; the Cognito session stays until it expires")
	case kindAuth0:
		if cfg.OIDC.AuthParams["audience"] == "" && hasTokenRoutes(cfg) {
			w = append(w, "oidc.auth_params: without an audience, Auth0 issues an access token for its /userinfo only, which your API cannot validate; set oidc.auth_params {audience: <your API identifier>}")
		}
	}
	if k != kindGoogle && wantsOffline && len(m.ScopesSupported) > 0 && !slices.Contains(m.ScopesSupported, "offline_access") {
		w = append(w, "oidc.scopes: offline_access is not in the provider's scopes_supported; it may refuse the login (remove the scope if it does)")
	}
	if !wantsOffline && slices.Contains(m.ScopesSupported, "offline_access") && k != kindEntra && k != kindKeycloak {
		w = append(w, "oidc.scopes: the provider lists offline_access but oidc.scopes does not ask for it; most such providers then issue no refresh token, and sessions end when the access token expires")
	}
	for _, s := range scopes {
		if len(m.ScopesSupported) > 0 && !slices.Contains(m.ScopesSupported, s) && s != "offline_access" {
			w = append(w, fmt.Sprintf("oidc.scopes: %s is not in the provider's scopes_supported (it may still accept it, e.g. an API scope)", s))
		}
	}
	if len(m.GrantTypesSupported) > 0 && !slices.Contains(m.GrantTypesSupported, "refresh_token") {
		w = append(w, "the provider's grant_types_supported lacks refresh_token: sessions end when the access token expires")
	}
	switch {
	case m.EndSessionEndpoint == "" && cfg.OIDC.PostLogoutRedirectURL != "":
		w = append(w, "oidc.post_logout_redirect_url: the provider has no end_session_endpoint, so it is never used; logout ends moat's session only")
	case m.EndSessionEndpoint == "" && k != kindCognito:
		w = append(w, "logout: the provider has no end_session_endpoint (RP-Initiated Logout), so moat's logout ends moat's session only; the user stays logged in at the provider")
	}
	switch {
	case !m.BackchannelLogoutSupported && m.FrontchannelLogoutSupported:
		w = append(w, "logout: the provider offers only front-channel logout, which moat does not implement; a logout at the provider (or in another app) does not end moat's sessions before their timeouts")
	case !m.BackchannelLogoutSupported:
		w = append(w, "logout: the provider's discovery document does not set backchannel_logout_supported, so it may never call moat's back-channel logout URI; a logout at the provider (or in another app) then does not end moat's sessions before their timeouts")
	}
	if LooksLikeHydra(m) && m.BackchannelLogoutSupported && !cfg.OIDC.InsecureLegacyLogoutTokens {
		w = append(w, "oidc.insecure_legacy_logout_tokens: the provider looks like Ory Hydra (end_session_endpoint "+m.EndSessionEndpoint+"), whose back-channel logout tokens are typed JWT and carry no exp, as the drafts of Back-Channel Logout before 2022 had them; moat refuses them unless this is true, so a logout at the provider would not end moat's sessions")
	}
	if m.RevocationEndpoint == "" && k != kindCognito {
		w = append(w, "logout: the provider has no revocation_endpoint; the refresh token of a logged-out session stays valid at the provider until it expires")
	}
	return append(w, configuredCapabilities(m, cfg)...)
}

// configuredCapabilities warns about what the configuration asks of the
// provider that its discovery document does not advertise, each naming
// the configuration key. (What makes every login fail is an error of moat
// check and /readyz instead: oidc.Client.Mismatches.)
func configuredCapabilities(m oidc.Metadata, cfg *config.Config) []string {
	var w []string
	method := cfg.OIDC.ClientAuthMethod
	if len(m.TokenEndpointAuthMethods) > 0 && !slices.Contains(m.TokenEndpointAuthMethods, method) {
		w = append(w, fmt.Sprintf("oidc.client_auth_method: %s is not in the provider's token_endpoint_auth_methods_supported %v, so the provider will likely refuse moat's token requests and every login fail; use one of those methods, or enable %s for this client at the provider", method, m.TokenEndpointAuthMethods, method))
	}
	if config.IsMTLS(method) && len(m.MTLSEndpointAliases) == 0 {
		w = append(w, fmt.Sprintf("oidc.client_auth_method: %s, but the provider's discovery document has no mtls_endpoint_aliases, so moat presents its client certificate at the regular token endpoint (RFC 8705 §5), which must ask for client certificates or every login fails", method))
	}
	for i, r := range cfg.Routes {
		if r.TokenExchange == nil {
			continue
		}
		if gt := m.GrantTypesSupported; len(gt) > 0 && !slices.Contains(gt, oidc.GrantTokenExchange) {
			w = append(w, fmt.Sprintf("routes[%d].token_exchange: the provider's grant_types_supported %v lacks %s (RFC 8693), so every call of this route will likely get 503; enable token exchange for this client at the provider, or remove token_exchange", i, gt, oidc.GrantTokenExchange))
		}
	}
	if cfg.OIDC.DPoP {
		for i, r := range cfg.Routes {
			if r.TokenExchange != nil || r.Token == config.TokenClient || r.Token == config.TokenUserOrClient {
				w = append(w, fmt.Sprintf("routes[%d]: with oidc.dpop, client-credentials and token-exchange requests still carry no DPoP proof and their tokens stay Bearer; a provider that requires a proof on every token request of this client refuses them, and this route answers 503", i))
			}
		}
	}
	if cfg.OIDC.DPoP && len(m.DPoPSigningAlgs) == 0 && cfg.OIDC.Profile != config.ProfileFAPI2 {
		w = append(w, "oidc.dpop: the provider's discovery document has no dpop_signing_alg_values_supported, so it may not support DPoP (RFC 9449 §5.1); if it answers with Bearer tokens every login fails (\"not DPoP\"); enable DPoP with ES256 for this client at the provider, or remove oidc.dpop")
	}
	if acr := cfg.OIDC.ACRValues; len(acr) > 0 {
		if len(m.ACRValuesSupported) == 0 {
			w = append(w, fmt.Sprintf("oidc.acr_values: the provider's discovery document has no acr_values_supported, so it may ignore acr_values %v; a step-up login then returns another acr, which the routes that require one refuse", acr))
		}
		for _, v := range acr {
			if len(m.ACRValuesSupported) > 0 && !slices.Contains(m.ACRValuesSupported, v) {
				w = append(w, fmt.Sprintf("oidc.acr_values: %s is not in the provider's acr_values_supported %v; a step-up login asking for it returns another acr (or an error), which the routes that require %s refuse", v, m.ACRValuesSupported, v))
			}
		}
	}
	return w
}

func hasTokenRoutes(cfg *config.Config) bool {
	for _, r := range cfg.Routes {
		if r.Token != config.TokenNone {
			return true
		}
	}
	return false
}

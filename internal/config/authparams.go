package config

import (
	"slices"
	"strings"
)

// protocolAuthParams are authorization request parameters moat sets or
// controls itself (OIDC Core §3.1.2.1, RFC 7636, RFC 9126, OAuth 2.0
// Multiple Response Types). oidc.auth_params may not name them: a static
// value would break the exchange (state, nonce, PKCE), the callback
// (response_type, response_mode, redirect_uri), or a check moat makes on
// the response (max_age, acr_values). The value is the fix to suggest.
var protocolAuthParams = map[string]string{
	"response_type":         "moat always uses the code flow",
	"response_mode":         "moat reads the authorization response from the query",
	"client_id":             "set oidc.client_id",
	"client_secret":         "set oidc.client_secret (sent to the token endpoint, never to the browser)",
	"client_assertion":      "moat authenticates with oidc.client_auth_method",
	"client_assertion_type": "moat authenticates with oidc.client_auth_method",
	"redirect_uri":          "moat derives it from public_url (public_url + /auth/callback)",
	"scope":                 "list scopes in oidc.scopes",
	"state":                 "moat makes a fresh state per login",
	"nonce":                 "moat makes a fresh nonce per login",
	"code_challenge":        "moat makes a fresh PKCE challenge per login",
	"code_challenge_method": "moat always uses S256",
	"request":               "moat pushes requests itself; see oidc.par",
	"request_uri":           "moat pushes requests itself; see oidc.par",
	"max_age":               "pass max_age to /auth/login, where moat also checks auth_time",
	"acr_values":            "list them in oidc.acr_values and pass acr_values to /auth/login",
	"id_token_hint":         "an ID token is per user, not per configuration",
}

// checkAuthParams refuses protocol parameters in oidc.auth_params, naming
// the key and what to use instead, and parameters that cannot be sent.
func (o OIDC) checkAuthParams(add func(key, format string, args ...any)) {
	keys := make([]string, 0, len(o.AuthParams))
	for k := range o.AuthParams {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors in a stable order
	for _, k := range keys {
		v := o.AuthParams[k]
		key := "oidc.auth_params." + k
		if fix, ok := protocolAuthParams[strings.ToLower(k)]; ok {
			add(key, "%s is a protocol parameter moat sets itself and may not be overridden: %s", k, fix)
			continue
		}
		if k == "" || strings.ContainsFunc(k, badParamRune) {
			add("oidc.auth_params", "%q is not a parameter name (no spaces or control characters)", k)
			continue
		}
		if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			add(key, "must be a non-empty value without control characters")
			continue
		}
		if k == "prompt" && slices.Contains(strings.Fields(v), "none") {
			add(key, "prompt=none on every login would never show the IdP's login page; the SPA asks for it per login at /auth/login?prompt=none")
		}
	}
}

func badParamRune(r rune) bool { return r <= 0x20 || r == 0x7f }

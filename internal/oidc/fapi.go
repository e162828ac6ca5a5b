package oidc

import (
	"fmt"
	"slices"

	"github.com/moat-bff/moat/internal/clientauth"
	"github.com/moat-bff/moat/internal/dpop"
)

// ProfileFAPI2 is the FAPI 2.0 Security Profile (final) for the client
// side: PAR required, PKCE S256, private_key_jwt or mTLS client
// authentication, sender-constrained access tokens (DPoP or mTLS
// certificate-bound, §5.3.2.2, §5.3.3), the RFC 9207 iss parameter
// required, and only PS256, ES256 or EdDSA signatures (FAPI 2.0 Security
// Profile §5.3.2, §5.4.1).
const ProfileFAPI2 = "fapi2"

// fapi2Algs are the only JWS algorithms FAPI 2.0 allows (§5.4.1).
var fapi2Algs = clientauth.FAPI2Algorithms()

func (c *Client) fapi2() bool { return c.cfg.Profile == ProfileFAPI2 }

// certificateBound reports whether moat's IdP HTTP client presents a TLS
// client certificate, so that access tokens are bound to it (RFC 8705 §3):
// with mTLS client authentication, or private_key_jwt with a certificate.
func (c *Client) certificateBound() bool { return IsMTLS(c.cfg.AuthMethod) || c.cfg.CertificateBound }

// fapi2Mismatches lists what the discovery document lacks for the FAPI 2.0
// Security Profile, each naming oidc.profile; PAR is checked with oidc.par,
// which fapi2 makes required.
func (c *Client) fapi2Mismatches(meta Metadata) []string {
	if !c.fapi2() {
		return nil
	}
	var out []string
	add := func(format string, args ...any) {
		out = append(out, "oidc.profile: fapi2, but "+fmt.Sprintf(format, args...)+", so every login is refused; configure the provider for FAPI 2.0 or remove oidc.profile")
	}
	if !meta.IssParameterSupported {
		add("the provider's discovery document does not set authorization_response_iss_parameter_supported (RFC 9207, FAPI 2.0 §5.3.2)")
	}
	if !slices.Contains(meta.CodeChallengeMethods, "S256") {
		add("the provider's code_challenge_methods_supported %q lacks S256 (PKCE, FAPI 2.0 §5.3.2)", meta.CodeChallengeMethods)
	}
	if !slices.Contains(meta.TokenEndpointAuthMethods, c.cfg.AuthMethod) {
		add("the provider's token_endpoint_auth_methods_supported %q lacks oidc.client_auth_method %s", meta.TokenEndpointAuthMethods, c.cfg.AuthMethod)
	}
	switch {
	case c.cfg.DPoP && !slices.Contains(meta.DPoPSigningAlgs, dpop.Algorithm):
		// Under fapi2 the binding must be certain: a provider that does
		// not say it takes ES256 proofs may hand out unbound tokens.
		add("the provider's dpop_signing_alg_values_supported %q lacks ES256, so access tokens would not be bound to the session's DPoP key (RFC 9449 §5.1, FAPI 2.0 §5.3.2.2 sender-constraining)", meta.DPoPSigningAlgs)
	case !c.cfg.DPoP && c.certificateBound() && !meta.TLSClientCertBoundAccessTokens:
		add("the provider's discovery document does not set tls_client_certificate_bound_access_tokens, so access tokens would not be bound to moat's TLS client certificate (RFC 8705 §3, FAPI 2.0 §5.3.2.2 sender-constraining); or set oidc.dpop: true")
	}
	if !slices.ContainsFunc(meta.IDTokenSigningAlgs, func(a string) bool { return slices.Contains(fapi2Algs, a) }) {
		add("the provider's id_token_signing_alg_values_supported %q has none of %q (FAPI 2.0 §5.4.1)", meta.IDTokenSigningAlgs, fapi2Algs)
	}
	return out
}

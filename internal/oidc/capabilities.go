package oidc

import (
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// idTokenAlgMismatch reports a provider whose
// id_token_signing_alg_values_supported (OpenID Connect Discovery 1.0 §3)
// names no algorithm moat verifies: the verifier would then expect RS256
// and refuse every ID token the provider signs.
func idTokenAlgMismatch(meta Metadata) string {
	if len(meta.IDTokenSigningAlgs) == 0 || slices.ContainsFunc(meta.IDTokenSigningAlgs, func(a string) bool {
		return slices.Contains(signingAlgs, jose.SignatureAlgorithm(a))
	}) {
		return ""
	}
	return fmt.Sprintf("oidc.issuer: the provider's id_token_signing_alg_values_supported %q has no algorithm moat verifies (%v), so every login would fail; have the provider sign this client's ID tokens with RS256 or ES256", meta.IDTokenSigningAlgs, signingAlgs)
}

package config

import (
	"slices"

	"github.com/moat-bff/moat/internal/clientauth"
)

// ProfileFAPI2 is oidc.profile: fapi2, the FAPI 2.0 Security Profile
// (final) for the client side.
const ProfileFAPI2 = "fapi2"

// fapi2SenderConstraint is the fix named whenever fapi2 lacks
// sender-constrained tokens: DPoP or mTLS (FAPI 2.0 §5.3.2.2, §5.3.3).
const fapi2SenderConstraint = "FAPI 2.0 §5.3.2.2 requires sender-constrained access tokens: set oidc.dpop: true (DPoP, RFC 9449), or bind them to a TLS client certificate (RFC 8705) with client_auth_method: tls_client_auth or self_signed_tls_client_auth, or private_key_jwt together with oidc.client_cert_file"

// validateProfile checks oidc.profile and, under fapi2, refuses every
// setting that cannot meet the FAPI 2.0 Security Profile, naming its key.
// Discovery checks are in oidc.Client.Mismatches. keys are the signing
// keys validateClientKeys loaded, if any.
func (c *Config) validateProfile(keys *clientauth.Keys, add func(key, format string, args ...any)) {
	o := c.OIDC
	switch o.Profile {
	case "":
		return
	case ProfileFAPI2:
	default:
		add("oidc.profile", "%q is not a profile; use fapi2 or leave it empty", o.Profile)
		return
	}
	if o.PAR != "required" {
		add("oidc.par", "is %s, but oidc.profile: fapi2 requires pushed authorization requests (FAPI 2.0 §5.3.2, RFC 9126); remove oidc.par or set it to required", o.PAR)
	}
	switch {
	case o.ClientAuthMethod != AuthPrivateKeyJWT && !IsMTLS(o.ClientAuthMethod):
		add("oidc.client_auth_method", "is %s, but oidc.profile: fapi2 allows only private_key_jwt, tls_client_auth or self_signed_tls_client_auth, never client_secret_* (FAPI 2.0 §5.3.2); %s", o.ClientAuthMethod, fapi2SenderConstraint)
	case o.ClientAuthMethod == AuthPrivateKeyJWT && o.ClientCertFile == "" && !o.DPoP:
		add("oidc.dpop", "is off and oidc.client_cert_file is empty, so under oidc.profile: fapi2 with client_auth_method: private_key_jwt the access tokens would not be sender-constrained: %s", fapi2SenderConstraint)
	}
	if !o.ClientSecret.IsZero() || o.ClientSecretFile != "" {
		add("oidc.client_secret", "must not be set with oidc.profile: fapi2 (no client_secret_* client authentication, FAPI 2.0 §5.3.2); remove it, client_secret_file and MOAT_OIDC_CLIENT_SECRET")
	}
	if keys != nil {
		if kid, alg := keys.Signing(); !slices.Contains(clientauth.FAPI2Algorithms(), alg) {
			add("oidc.client_key_file", "its first key (kid %q) signs with %s, but oidc.profile: fapi2 allows only PS256, ES256 or EdDSA (FAPI 2.0 §5.4.1); set the key's \"alg\" to PS256 (RSA), or create one with `moat keygen --jwk`", kid, alg)
		}
	}
	// response_type is always code: oidc.auth_params cannot change it (authparams.go).
}

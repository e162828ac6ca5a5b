package config

import "github.com/moat-bff/moat/internal/clientauth"

// Audiences of client assertions (oidc.client_assertion_audience).
const (
	AssertionAudIssuer   = "issuer"
	AssertionAudEndpoint = "endpoint"
)

// validateClientKeys checks the private_key_jwt settings.
func (c *Config) validateClientKeys(add func(key, format string, args ...any)) {
	o := c.OIDC
	if o.ClientAuthMethod != AuthPrivateKeyJWT {
		if o.ClientKeyFile != "" {
			add("oidc.client_key_file", "is used only with client_auth_method: %s", AuthPrivateKeyJWT)
		}
		return
	}
	switch {
	case o.ClientKeyFile == "":
		add("oidc.client_key_file", "is required with client_auth_method: %s; create one with `moat keygen --jwk --out client-key.pem`", AuthPrivateKeyJWT)
	default:
		if _, err := clientauth.Load(o.ClientKeyFile); err != nil {
			add("oidc.client_key_file", "%v", err)
		}
	}
	if a := o.ClientAssertionAudience; a != AssertionAudIssuer && a != AssertionAudEndpoint {
		add("oidc.client_assertion_audience", "%q is not an audience; use %s or %s", a, AssertionAudIssuer, AssertionAudEndpoint)
	}
}

package config

import "github.com/moat-bff/moat/internal/clientauth"

// Audiences of client assertions (oidc.client_assertion_audience).
const (
	AssertionAudIssuer   = "issuer"
	AssertionAudEndpoint = "endpoint"
)

// validateClientKeys checks the private_key_jwt and request object
// settings: both sign with the keys of client_key_file.
func (c *Config) validateClientKeys(add func(key, format string, args ...any)) {
	o := c.OIDC
	if o.ClientAuthMethod != AuthPrivateKeyJWT && !o.RequestObject {
		if o.ClientKeyFile != "" {
			add("oidc.client_key_file", "is used only with client_auth_method: %s or request_object: true", AuthPrivateKeyJWT)
		}
		return
	}
	switch {
	case o.ClientKeyFile == "" && o.ClientAuthMethod == AuthPrivateKeyJWT:
		add("oidc.client_key_file", "is required with client_auth_method: %s; create one with `moat keygen --jwk --out client-key.pem`", AuthPrivateKeyJWT)
	case o.ClientKeyFile == "":
		add("oidc.client_key_file", "is required with request_object: true (request objects are signed with its first key); create one with `moat keygen --jwk --out client-key.pem` and register the printed public keys at the IdP")
	default:
		if _, err := clientauth.Load(o.ClientKeyFile); err != nil {
			add("oidc.client_key_file", "%v", err)
		}
	}
	if o.ClientAuthMethod != AuthPrivateKeyJWT {
		return
	}
	if a := o.ClientAssertionAudience; a != AssertionAudIssuer && a != AssertionAudEndpoint {
		add("oidc.client_assertion_audience", "%q is not an audience; use %s or %s", a, AssertionAudIssuer, AssertionAudEndpoint)
	}
}

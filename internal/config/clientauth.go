package config

import (
	"crypto/tls"

	"github.com/moat-bff/moat/internal/clientauth"
)

// Audiences of client assertions (oidc.client_assertion_audience).
const (
	AssertionAudIssuer   = "issuer"
	AssertionAudEndpoint = "endpoint"
)

// IsMTLS reports whether method authenticates with a TLS client
// certificate (RFC 8705 §2).
func IsMTLS(method string) bool { return method == AuthTLSClient || method == AuthSelfSignedTLS }

// validateClientKeys checks the private_key_jwt, mTLS and request object
// settings: all use the keys of client_key_file. It returns the keys
// when it loaded them as signing keys (read and parsed once), else nil.
func (c *Config) validateClientKeys(add func(key, format string, args ...any)) *clientauth.Keys {
	o := c.OIDC
	if IsMTLS(o.ClientAuthMethod) {
		switch {
		case o.ClientCertFile == "" || o.ClientKeyFile == "":
			add("oidc.client_cert_file", "and oidc.client_key_file are required with client_auth_method: %s: moat's TLS client certificate (PEM) and its private key", o.ClientAuthMethod)
		default:
			if _, err := tls.LoadX509KeyPair(o.ClientCertFile, o.ClientKeyFile); err != nil {
				add("oidc.client_cert_file", "with oidc.client_key_file: %v", err)
			}
		}
		if o.RequestObject && o.ClientKeyFile != "" {
			return loadClientKeys(o.ClientKeyFile, add)
		}
		return nil
	}
	switch {
	case o.ClientCertFile != "" && o.ClientAuthMethod == AuthPrivateKeyJWT && o.ClientKeyFile != "":
		// RFC 8705 §3: the certificate binds access tokens, the
		// assertion authenticates.
		if _, err := tls.LoadX509KeyPair(o.ClientCertFile, o.ClientKeyFile); err != nil {
			add("oidc.client_cert_file", "with oidc.client_key_file (PEM): %v", err)
		}
	case o.ClientCertFile != "" && o.ClientAuthMethod != AuthPrivateKeyJWT:
		add("oidc.client_cert_file", "is used only with client_auth_method: %s, %s or %s (there to bind access tokens to the certificate, RFC 8705 §3)", AuthTLSClient, AuthSelfSignedTLS, AuthPrivateKeyJWT)
	}
	if o.ClientAuthMethod != AuthPrivateKeyJWT && !o.RequestObject {
		if o.ClientKeyFile != "" {
			add("oidc.client_key_file", "is used only with client_auth_method: %s, %s or %s, or request_object: true", AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLS)
		}
		return nil
	}
	var keys *clientauth.Keys
	switch {
	case o.ClientKeyFile == "" && o.ClientAuthMethod == AuthPrivateKeyJWT:
		add("oidc.client_key_file", "is required with client_auth_method: %s; create one with `moat keygen --jwk --out client-key.pem`", AuthPrivateKeyJWT)
	case o.ClientKeyFile == "":
		add("oidc.client_key_file", "is required with request_object: true (request objects are signed with its first key); create one with `moat keygen --jwk --out client-key.pem` and register the printed public keys at the IdP")
	default:
		keys = loadClientKeys(o.ClientKeyFile, add)
	}
	if a := o.ClientAssertionAudience; o.ClientAuthMethod == AuthPrivateKeyJWT && a != AssertionAudIssuer && a != AssertionAudEndpoint {
		add("oidc.client_assertion_audience", "%q is not an audience; use %s or %s", a, AssertionAudIssuer, AssertionAudEndpoint)
	}
	return keys
}

func loadClientKeys(path string, add func(key, format string, args ...any)) *clientauth.Keys {
	keys, err := clientauth.Load(path)
	if err != nil {
		add("oidc.client_key_file", "%v", err)
		return nil
	}
	return keys
}

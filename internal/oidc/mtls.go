package oidc

import (
	"context"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// Mutual-TLS client authentication methods (RFC 8705 §2): the IdP HTTP
// client presents moat's certificate; the request carries client_id only.
const (
	MTLSClientAuth = "tls_client_auth"             // PKI: a CA-issued certificate and its subject (§2.1)
	MTLSSelfSigned = "self_signed_tls_client_auth" // the registered certificate itself (§2.2)
)

// IsMTLS reports whether method authenticates with a TLS client
// certificate.
func IsMTLS(method string) bool { return method == MTLSClientAuth || method == MTLSSelfSigned }

// useMTLSAliases points the token, PAR, revocation, UserInfo and
// introspection endpoints at the provider's mtls_endpoint_aliases, where
// it asks for client certificates (RFC 8705 §5); endpoints without an
// alias stay as they are.
func useMTLSAliases(ctx context.Context, op *gooidc.Provider, meta *Metadata) (*gooidc.Provider, error) {
	if len(meta.MTLSEndpointAliases) == 0 {
		return op, nil
	}
	for name, field := range map[string]*string{
		"token_endpoint":                        &meta.TokenEndpoint,
		"pushed_authorization_request_endpoint": &meta.PAREndpoint,
		"revocation_endpoint":                   &meta.RevocationEndpoint,
		"userinfo_endpoint":                     &meta.UserinfoEndpoint,
		"introspection_endpoint":                &meta.IntrospectionEndpoint,
	} {
		if alias := meta.MTLSEndpointAliases[name]; alias != "" {
			*field = alias
		}
	}
	pc := gooidc.ProviderConfig{
		IssuerURL: meta.Issuer, AuthURL: op.Endpoint().AuthURL, TokenURL: meta.TokenEndpoint,
		DeviceAuthURL: op.Endpoint().DeviceAuthURL, UserInfoURL: meta.UserinfoEndpoint, JWKSURL: meta.JWKSURI,
		Algorithms: meta.IDTokenSigningAlgs,
	}
	return pc.NewProvider(ctx), nil
}

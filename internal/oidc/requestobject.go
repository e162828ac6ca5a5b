package oidc

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/moat-bff/moat/internal/dpop"
)

// RequestObjectSigner signs authorization requests (clientauth.Keys).
type RequestObjectSigner interface {
	// RequestObject returns a request object JWT for clientID with
	// audience aud carrying params as claims (RFC 9101 §4).
	RequestObject(clientID, aud string, params url.Values, now time.Time) (string, error)
	// Signing names the signing key and its JWS algorithm.
	Signing() (kid, alg string)
}

// requestObjectsSupported refuses a provider whose discovery document does
// not list the signing key's algorithm in
// request_object_signing_alg_values_supported (RFC 9101 §9.2.1): it would
// refuse every login, or silently ignore the request object.
func (c *Client) requestObjectsSupported(meta Metadata) error {
	if c.cfg.RequestObjects == nil {
		return nil
	}
	_, alg := c.cfg.RequestObjects.Signing()
	if !slices.Contains(meta.RequestObjectSigningAlgs, alg) {
		return fmt.Errorf("oidc.request_object: the provider's request_object_signing_alg_values_supported %q lacks %s, the algorithm of the first key in oidc.client_key_file, so every login would fail; enable signed request objects (JAR, RFC 9101) with %s at the provider, or use a key it supports", meta.RequestObjectSigningAlgs, alg, alg)
	}
	return nil
}

// requestObjectURL moves every parameter of the authorization URL full
// into a signed request object (RFC 9101). With PAR it is pushed as the
// only authorization parameter (RFC 9126 §3) and the browser gets
// client_id and request_uri; without, it travels by value with client_id,
// and response_type and scope duplicated outside as OIDC Core §6.1 asks
// (RFC 9101 §5 lets the provider use only the request object's values).
func (c *Client) requestObjectURL(ctx context.Context, p *provider, full string, push bool, key *dpop.Key) (string, error) {
	if err := c.requestObjectsSupported(p.meta); err != nil {
		return "", err
	}
	u, err := url.Parse(full)
	if err != nil {
		return "", err
	}
	params := u.Query()
	jar, err := c.cfg.RequestObjects.RequestObject(c.cfg.ClientID, c.cfg.Issuer, params, c.cfg.Now())
	if err != nil {
		return "", err
	}
	if push {
		return c.pushAuthorizationRequest(ctx, p, u, url.Values{"request": {jar}}, key)
	}
	u.RawQuery = url.Values{
		"client_id":     {c.cfg.ClientID},
		"response_type": params["response_type"],
		"scope":         params["scope"],
		"request":       {jar},
	}.Encode()
	return u.String(), nil
}

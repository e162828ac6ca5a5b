package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"github.com/moat-bff/moat/internal/dpop"
)

// usePAR decides whether to push the authorization request (RFC 9126):
// with auto, whenever the provider offers an endpoint.
func (c *Client) usePAR(meta Metadata) (bool, error) {
	switch {
	case c.cfg.PAR == PAROff && meta.RequirePAR:
		return false, errors.New("the provider requires pushed authorization requests (require_pushed_authorization_requests) but oidc.par is off")
	case c.cfg.PAR == PAROff:
		return false, nil
	case meta.PAREndpoint == "" && (c.cfg.PAR == PARRequired || meta.RequirePAR):
		return false, fmt.Errorf("%w: pushed authorization requests are required but the provider has no pushed_authorization_request_endpoint", ErrRejected)
	}
	return meta.PAREndpoint != "", nil
}

// pushAuthorizationRequest sends form (the authorization request's
// parameters, or its request object, RFC 9126 §3) to the PAR endpoint with
// client authentication (§2.1) and returns the short URL on the
// authorization endpoint u that the browser follows: client_id and the
// one-time request_uri only (§4), so state, nonce and the PKCE challenge
// never appear in the browser's URL bar, history or the IdP's access logs.
//
// With a DPoP key the request carries a proof, which binds the code to the
// key (RFC 9449 §10.1).
func (c *Client) pushAuthorizationRequest(ctx context.Context, p *provider, u *url.URL, form url.Values, key *dpop.Key) (string, error) {
	resp, err := c.postForm(ctx, p.meta.PAREndpoint, form, key)
	if err != nil {
		return "", fmt.Errorf("%w: pushed authorization request: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("%w: pushed authorization request: %v", ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode >= 500:
		return "", fmt.Errorf("%w: pushed authorization request answered %s", ErrUnavailable, resp.Status)
	case resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK:
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		return "", fmt.Errorf("%w: pushed authorization request answered %s %s", ErrRejected, resp.Status, e.Error)
	}
	var par struct {
		RequestURI string `json:"request_uri"`
		ExpiresIn  int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &par); err != nil || par.RequestURI == "" {
		return "", fmt.Errorf("%w: pushed authorization request: no request_uri in the answer", ErrRejected)
	}
	short := url.Values{"client_id": {c.cfg.ClientID}, "request_uri": {par.RequestURI}}
	u.RawQuery = short.Encode()
	return u.String(), nil
}

// Mismatches lists what the configuration asks of the provider that its
// discovery document says it cannot do, each naming the configuration key:
// with any of these every login fails, so moat check reports them and
// /readyz is not ready.
func (c *Client) Mismatches(meta Metadata) []string {
	var out []string
	switch {
	case c.cfg.PAR == PARRequired && meta.PAREndpoint == "":
		out = append(out, "oidc.par: required, but the provider's discovery document has no pushed_authorization_request_endpoint, so every login would fail; set oidc.par to auto or off, or enable PAR at the provider")
	case c.cfg.PAR == PAROff && meta.RequirePAR:
		out = append(out, "oidc.par: off, but the provider requires pushed authorization requests (require_pushed_authorization_requests), so every login would fail; set oidc.par to auto")
	}
	if len(meta.ResponseTypesSupported) > 0 && !slices.Contains(meta.ResponseTypesSupported, "code") {
		out = append(out, fmt.Sprintf("oidc.issuer: the provider's response_types_supported %v lacks code, the authorization code flow moat uses, so every login would fail; enable it for this client at the provider", meta.ResponseTypesSupported))
	}
	if err := c.requestObjectsSupported(meta); err != nil {
		out = append(out, err.Error())
	}
	if m := idTokenAlgMismatch(meta); m != "" {
		out = append(out, m)
	}
	if m := c.dpopMismatch(meta); m != "" {
		out = append(out, m)
	}
	return append(out, c.fapi2Mismatches(meta)...)
}

package oidc

import (
	"context"
	"maps"
	"net/http"
	"net/url"

	"github.com/moat-bff/moat/internal/formpost"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ClientCredentials obtains an access token for moat itself with the
// client credentials grant (RFC 6749 §4.4), for routes with token: client.
// The token endpoint's refusals are classified as for a refresh: a refused
// client is a deployment problem (503), never a user's.
func (c *Client) ClientCredentials(ctx context.Context, scopes []string) (Tokens, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return Tokens{}, err
	}
	tok, err := c.tokenRequest(ctx, p, scopes, nil)
	if err != nil {
		return Tokens{}, c.classify("client_credentials", err)
	}
	c.tokenEndpointOK()
	return checkTokenResponse(tok, false)
}

// tokenRequest POSTs a token request without a user's grant: client
// credentials, or with params' grant_type another grant (token exchange).
// x/oauth2's client-credentials flow lets grant_type be replaced and brings
// the client authentication every grant uses.
func (c *Client) tokenRequest(ctx context.Context, p *provider, scopes []string, params url.Values) (*oauth2.Token, error) {
	cc := clientcredentials.Config{
		ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret.Reveal(),
		TokenURL: p.oauth.Endpoint.TokenURL, AuthStyle: p.oauth.Endpoint.AuthStyle,
		Scopes: scopes, EndpointParams: params,
	}
	return cc.Token(c.clientCtx(ctx))
}

// addForm adds parameters to the form of every POST it carries; base is
// never nil (clientCtxVia).
type addForm struct {
	base  http.RoundTripper
	extra url.Values
}

func (a addForm) RoundTrip(r *http.Request) (*http.Response, error) {
	out, err := formpost.Edit(r, func(form url.Values) error {
		maps.Copy(form, a.extra)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.base.RoundTrip(out)
}

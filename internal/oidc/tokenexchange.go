package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"golang.org/x/oauth2"
)

// RFC 8693 identifiers.
const (
	GrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange" // §2.1
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"   // §3
)

// ErrSubjectTokenRefused: the token endpoint answered a token exchange
// with invalid_grant, refusing the subject token (RFC 8693 §2.2.2), e.g. an
// access token revoked before its expiry. Errors wrapping it also wrap
// ErrInvalidGrant.
var ErrSubjectTokenRefused = errors.New("oidc: the identity provider refused the subject token")

// ExchangeRequest names the token an exchange asks for (RFC 8693 §2.1):
// at least one of Audience and Resource.
type ExchangeRequest struct {
	Audience string
	Resource string
	Scope    []string
}

// TokenExchange exchanges subjectToken, the user's access token, for an
// access token for req's target (RFC 8693 §2.1), authenticating moat as
// at every token request (client secret, private_key_jwt or mTLS). Only an
// issued_token_type of access_token with token_type Bearer is accepted
// (§2.2.1): an N_A or other token is refused, never forwarded. A refused
// target (invalid_target) or client is a deployment problem (wrapping
// ErrUnavailable); invalid_grant (the subject token refused) wraps
// ErrSubjectTokenRefused.
func (c *Client) TokenExchange(ctx context.Context, subjectToken string, req ExchangeRequest) (Tokens, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return Tokens{}, err
	}
	params := url.Values{
		"grant_type":           {GrantTokenExchange},
		"subject_token":        {subjectToken},
		"subject_token_type":   {TokenTypeAccessToken},
		"requested_token_type": {TokenTypeAccessToken},
	}
	if req.Audience != "" {
		params.Set("audience", req.Audience)
	}
	if req.Resource != "" {
		params.Set("resource", req.Resource)
	}
	tok, err := c.tokenRequest(ctx, p, req.Scope, params)
	if err != nil {
		var re *oauth2.RetrieveError
		subjectRefused := errors.As(err, &re) && re.ErrorCode == "invalid_grant"
		err = c.classify(fmt.Sprintf("token exchange for audience %q resource %q", req.Audience, req.Resource), err)
		if subjectRefused && errors.Is(err, ErrInvalidGrant) { // not a 5xx that carried the code
			err = fmt.Errorf("%w: %w", ErrSubjectTokenRefused, err)
		}
		return Tokens{}, err
	}
	c.tokenEndpointOK()
	if it, _ := tok.Extra("issued_token_type").(string); it != TokenTypeAccessToken {
		return Tokens{}, fmt.Errorf("%w: token exchange issued_token_type %q, want %s (RFC 8693 §2.2.1)", ErrRejected, truncate(errorCode(it), 80), TokenTypeAccessToken)
	}
	t, err := checkTokenResponse(tok, false)
	if err != nil {
		return Tokens{}, err
	}
	t.RefreshToken, t.IDToken = "", "" // never kept: the exchange is repeated instead
	return t, nil
}

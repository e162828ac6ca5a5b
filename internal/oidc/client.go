// Package oidc is moat's confidential OpenID Connect client: discovery, the
// authorization code flow with PKCE, state and nonce, token exchange and
// refresh with client authentication, full ID-token validation, UserInfo,
// revocation and the end-session URL. Signatures, JWKS handling and the OAuth
// wire protocol come from go-oidc, go-jose and x/oauth2; this package adds
// the checks they leave to the caller.
package oidc

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/secret"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// Errors callers branch on.
var (
	// ErrUnavailable: the IdP could not be reached or failed (network error,
	// timeout, 5xx, unusable answer). Sessions survive it; moat answers 503.
	ErrUnavailable = errors.New("oidc: identity provider unavailable")
	// ErrInvalidGrant: the IdP refused the grant (RFC 6749 §5.2): the code or
	// refresh token is spent, revoked or expired. Providers say so with
	// invalid_grant, invalid_request or other 4xx answers; ClassifyTokenError
	// decides which. A session built on that refresh token is over
	// (draft-ietf-oauth-browser-based-apps §6.1.2.2).
	ErrInvalidGrant = errors.New("oidc: grant is invalid")
	// ErrSubjectChanged: a refresh returned a valid ID token for another
	// subject (OIDC Core §12.2). The session is over; the new refresh token
	// has been revoked.
	ErrSubjectChanged = errors.New("oidc: the refreshed ID token names another subject")
	// ErrTokenNotAccepted: the UserInfo endpoint refused the access token
	// (401 or 403, RFC 6750 §3.1).
	ErrTokenNotAccepted = errors.New("oidc: the identity provider did not accept the access token")
	// ErrRejected: the IdP's answer failed validation (ID token, iss
	// parameter, token response). Nothing from it may be used.
	ErrRejected = errors.New("oidc: response rejected")
	// ErrNotBound: a token request carried a DPoP proof but the answer's
	// token_type is not DPoP (RFC 9449 §5). Errors wrapping it also wrap
	// ErrRejected.
	ErrNotBound = errors.New("oidc: the access token is not DPoP-bound")
)

// Config configures a Client.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret secret.String
	// AuthMethod is client_secret_basic, client_secret_post,
	// private_key_jwt (HTTPClient must add the assertion:
	// clientauth.Transport), tls_client_auth or self_signed_tls_client_auth
	// (HTTPClient must present the certificate; RFC 8705).
	AuthMethod  string
	Scopes      []string
	RedirectURL string
	// TrustedAudiences may appear in an ID token's aud besides ClientID.
	TrustedAudiences []string
	// MaxIDTokenAge bounds iat; ClockSkew is the leeway on exp, iat, nbf.
	MaxIDTokenAge time.Duration
	ClockSkew     time.Duration
	// HTTPClient makes every call to the IdP; it should have a timeout.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// RetryDiscoveryAfter is how long a failed discovery is remembered before
	// the next attempt; 5s when zero.
	RetryDiscoveryAfter time.Duration
	// PAR is auto (push authorization requests, RFC 9126, when the provider
	// offers it), required, or off.
	PAR string
	// JWKSRefetchEvery bounds how often a token with an unknown kid may
	// make moat fetch the JWKS again; 10s when zero.
	JWKSRefetchEvery time.Duration
	// OnClientRejected, if set, is called each time the token endpoint
	// refuses moat's client (ErrClientRejected), for a metric.
	OnClientRejected func()
	// AuthParams are extra authorization request parameters (Auth0's
	// audience, Google's access_type). They never replace a parameter moat
	// sets, nor one the login asked for (prompt, max_age, acr_values).
	AuthParams map[string]string
	// Resources are the RFC 8707 resource indicators of the routes that
	// want audience-restricted tokens: the authorization request names
	// them all (§2.1), so that refreshes may ask for each (§2.2).
	Resources []string
	// RequestObjects, if set, signs every authorization request into a
	// request object (RFC 9101), pushed with PAR when PAR is used.
	RequestObjects RequestObjectSigner
	// Profile is "" or ProfileFAPI2, which forces PAR to required and
	// enforces the rest of the FAPI 2.0 Security Profile (fapi.go).
	Profile string
	// CertificateBound: HTTPClient presents a TLS client certificate with
	// another AuthMethod (private_key_jwt), so that access tokens are
	// bound to it (RFC 8705 §3); the mtls_endpoint_aliases are used.
	CertificateBound bool
	// LegacyLogoutTokens accepts back-channel logout tokens shaped by the
	// drafts of Back-Channel Logout 1.0 before its final version (2022),
	// as Ory Hydra 2.x sends them: typ JWT, no exp (VerifyLogoutToken).
	LegacyLogoutTokens bool
	// DPoP: every session's tokens are bound to its own key (RFC 9449):
	// logins and refreshes need the session's key, and the token endpoint
	// must answer token_type DPoP.
	DPoP bool
}

// PAR modes.
const (
	PARAuto     = "auto"
	PARRequired = "required"
	PAROff      = "off"
)

// Client is safe for concurrent use. Discovery happens on first use and is
// retried after failures, so moat starts (and reports not ready) while the
// IdP is down, and recovers by itself.
type Client struct {
	cfg Config
	log *slog.Logger

	group   singleflight.Group
	mu      sync.Mutex
	prov    *provider
	lastErr error
	lastTry time.Time

	rejMu     sync.Mutex
	rejected  ClientRejection
	rejLogged time.Time

	nonces dpop.Nonces // the IdP's latest DPoP nonces (RFC 9449 §8)
}

// Metadata is the part of the provider's discovery document moat uses
// (OpenID Connect Discovery 1.0 §3, RFC 8414, RFC 9207, RFC 7009).
type Metadata struct {
	Issuer                     string   `json:"issuer"`
	TokenEndpoint              string   `json:"token_endpoint"`
	UserinfoEndpoint           string   `json:"userinfo_endpoint"`
	JWKSURI                    string   `json:"jwks_uri"`
	EndSessionEndpoint         string   `json:"end_session_endpoint"`
	RevocationEndpoint         string   `json:"revocation_endpoint"`
	CodeChallengeMethods       []string `json:"code_challenge_methods_supported"`
	ResponseTypesSupported     []string `json:"response_types_supported"`
	TokenEndpointAuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
	IssParameterSupported      bool     `json:"authorization_response_iss_parameter_supported"`
	PAREndpoint                string   `json:"pushed_authorization_request_endpoint"`
	RequirePAR                 bool     `json:"require_pushed_authorization_requests"`
	BackchannelLogoutSupported bool     `json:"backchannel_logout_supported"`
	IDTokenSigningAlgs         []string `json:"id_token_signing_alg_values_supported"`
	RequestObjectSigningAlgs   []string `json:"request_object_signing_alg_values_supported"`
	// DPoPSigningAlgs are the proof algorithms the provider accepts
	// (RFC 9449 §5.1); absent when it does not say.
	DPoPSigningAlgs []string `json:"dpop_signing_alg_values_supported"`
	// MTLSEndpointAliases are the endpoints to use with mTLS client
	// authentication (RFC 8705 §5).
	MTLSEndpointAliases map[string]string `json:"mtls_endpoint_aliases"`
	// TLSClientCertBoundAccessTokens: the provider binds access tokens to
	// the client's TLS certificate (RFC 8705 §3.3).
	TLSClientCertBoundAccessTokens bool `json:"tls_client_certificate_bound_access_tokens"`
	// For moat init and moat check's provider report only.
	ScopesSupported             []string `json:"scopes_supported"`
	ACRValuesSupported          []string `json:"acr_values_supported"`
	GrantTypesSupported         []string `json:"grant_types_supported"`
	FrontchannelLogoutSupported bool     `json:"frontchannel_logout_supported"`
	IntrospectionEndpoint       string   `json:"introspection_endpoint"`
}

type provider struct {
	op       *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	// noExpVerifier is verifier without the exp check, for logout tokens
	// without exp (Config.LegacyLogoutTokens); nil otherwise.
	noExpVerifier *gooidc.IDTokenVerifier
	oauth         *oauth2.Config
	meta          Metadata
}

// New returns a Client. It does not contact the IdP; see Discover.
func New(cfg Config, log *slog.Logger) *Client {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.JWKSRefetchEvery == 0 {
		cfg.JWKSRefetchEvery = 10 * time.Second
	}
	if cfg.RetryDiscoveryAfter == 0 {
		cfg.RetryDiscoveryAfter = 5 * time.Second
	}
	cfg.AuthParams = maps.Clone(cfg.AuthParams)
	if cfg.Profile == ProfileFAPI2 {
		cfg.PAR = PARRequired // FAPI 2.0 §5.3.2
	}
	return &Client{cfg: cfg, log: log}
}

// Discover loads the discovery document and returns the provider's metadata.
// It is cheap once loaded. After a failure it returns the same error for
// RetryDiscoveryAfter before trying again, so an outage is not amplified.
func (c *Client) Discover(ctx context.Context) (Metadata, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return Metadata{}, err
	}
	return p.meta, nil
}

// Cached returns the discovery metadata if it is loaded, without any I/O.
func (c *Client) Cached() (Metadata, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prov == nil {
		return Metadata{}, false
	}
	return c.prov.meta, true
}

// EndpointName names the IdP endpoint u belongs to, for metrics: discovery,
// jwks, token, userinfo, revocation or other.
func (c *Client) EndpointName(u *url.URL) string {
	if strings.HasSuffix(u.Path, "/.well-known/openid-configuration") {
		return "discovery"
	}
	md, ok := c.Cached()
	if !ok {
		return "other"
	}
	plain := *u
	plain.RawQuery = ""
	switch plain.String() {
	case md.TokenEndpoint:
		return "token"
	case md.UserinfoEndpoint:
		return "userinfo"
	case md.JWKSURI:
		return "jwks"
	case md.RevocationEndpoint:
		return "revocation"
	}
	return "other"
}

func (c *Client) provider(ctx context.Context) (*provider, error) {
	c.mu.Lock()
	p, lastErr, lastTry := c.prov, c.lastErr, c.lastTry
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	if lastErr != nil && c.cfg.Now().Sub(lastTry) < c.cfg.RetryDiscoveryAfter {
		return nil, lastErr
	}
	v, err, _ := c.group.Do("discover", func() (any, error) {
		// Detached from the caller's cancellation (one caller giving up must
		// not fail the others) but bounded by the HTTP client's timeout.
		p, err := c.discover(context.WithoutCancel(ctx))
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lastTry = c.cfg.Now()
		var mismatch *gooidc.IssuerMismatchError
		switch {
		case errors.As(err, &mismatch):
			c.lastErr = &issuerMismatch{configured: c.cfg.Issuer, discovered: mismatch.Discovered}
			return nil, c.lastErr
		case err != nil:
			c.lastErr = fmt.Errorf("%w: discovery at %s: %v", ErrUnavailable, c.cfg.Issuer, err)
			return nil, c.lastErr
		}
		c.prov, c.lastErr = p, nil
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*provider), nil
}

func (c *Client) discover(ctx context.Context) (*provider, error) {
	ctx = gooidc.ClientContext(ctx, c.cfg.HTTPClient)
	op, err := gooidc.NewProvider(ctx, c.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta Metadata
	if err := op.Claims(&meta); err != nil {
		return nil, err
	}
	style := oauth2.AuthStyleInHeader
	if c.cfg.AuthMethod == "client_secret_post" || c.cfg.AuthMethod == "private_key_jwt" || IsMTLS(c.cfg.AuthMethod) {
		// private_key_jwt: client_id only, the transport adds the
		// assertion; mTLS: client_id only (RFC 8705 §2), the certificate
		// authenticates.
		style = oauth2.AuthStyleInParams
	}
	if c.certificateBound() {
		if op, err = useMTLSAliases(ctx, op, &meta); err != nil {
			return nil, err
		}
	}
	if len(meta.TokenEndpointAuthMethods) > 0 && !slices.Contains(meta.TokenEndpointAuthMethods, c.cfg.AuthMethod) {
		c.log.Warn("the provider does not list the configured client authentication method",
			"configured", c.cfg.AuthMethod, "supported", meta.TokenEndpointAuthMethods)
	}
	if !slices.Contains(meta.CodeChallengeMethods, "S256") {
		// RFC 9700 §4.7.1: without confirmed PKCE support, state and nonce
		// carry the CSRF and injection defence; moat checks both anyway.
		c.log.Warn("the provider does not advertise PKCE S256; relying on state and nonce")
	}
	endpoint := op.Endpoint()
	endpoint.AuthStyle = style
	var algs []string
	for _, a := range meta.IDTokenSigningAlgs {
		if slices.Contains(signingAlgs, jose.SignatureAlgorithm(a)) && (!c.fapi2() || slices.Contains(fapi2Algs, a)) {
			algs = append(algs, a)
		}
	}
	keys := &keySet{uri: meta.JWKSURI, client: c.cfg.HTTPClient, now: c.cfg.Now, every: c.cfg.JWKSRefetchEvery}
	vcfg := &gooidc.Config{
		ClientID:             c.cfg.ClientID,
		SupportedSigningAlgs: algs, // RS256 when the provider names none (OIDC Discovery §3); under fapi2 none passes then
		// go-oidc compares exp and nbf without leeway; shifting its clock
		// back by the skew grants the leeway on exp only where it matters.
		Now: func() time.Time { return c.cfg.Now().Add(-c.cfg.ClockSkew) },
	}
	var noExp *gooidc.IDTokenVerifier
	if c.cfg.LegacyLogoutTokens {
		ncfg := *vcfg
		ncfg.SkipExpiryCheck = true
		noExp = gooidc.NewVerifier(c.cfg.Issuer, keys, &ncfg)
	}
	return &provider{
		op:            op,
		verifier:      gooidc.NewVerifier(c.cfg.Issuer, keys, vcfg),
		noExpVerifier: noExp,
		oauth: &oauth2.Config{
			ClientID:     c.cfg.ClientID,
			ClientSecret: c.cfg.ClientSecret.Reveal(),
			Endpoint:     endpoint,
			RedirectURL:  c.cfg.RedirectURL,
			Scopes:       c.cfg.Scopes,
		},
		meta: meta,
	}, nil
}

// AuthRequest is one login's secrets, all fresh per login (RFC 9700 §2.1.1).
type AuthRequest struct {
	State    string
	Nonce    string
	Verifier string     // PKCE code_verifier (RFC 7636); sent as its S256 challenge
	Extra    url.Values // prompt, max_age, acr_values ...
	// DPoP is the login's key, with Config.DPoP: its thumbprint goes as
	// dpop_jkt and the PAR request carries a proof (RFC 9449 §10), so the
	// code can be redeemed only with this key.
	DPoP *dpop.Key
}

// AuthCodeURL returns the authorization endpoint URL for req.
func (c *Client) AuthCodeURL(ctx context.Context, req AuthRequest) (string, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return "", err
	}
	if err := c.needKey(req.DPoP); err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(req.Verifier),
		oauth2.SetAuthURLParam("nonce", req.Nonce),
	}
	if req.DPoP != nil {
		opts = append(opts, oauth2.SetAuthURLParam("dpop_jkt", req.DPoP.Thumbprint()))
	}
	for k, vs := range req.Extra {
		for _, v := range vs {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	full := p.oauth.AuthCodeURL(req.State, opts...)
	if len(c.cfg.AuthParams) > 0 || len(c.cfg.Resources) > 0 {
		u, err := url.Parse(full)
		if err != nil {
			return "", err
		}
		q := u.Query()
		for k, v := range c.cfg.AuthParams {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		for _, r := range c.cfg.Resources {
			q.Add("resource", r)
		}
		u.RawQuery = q.Encode()
		full = u.String()
	}
	push, err := c.usePAR(p.meta)
	if err != nil {
		return "", err
	}
	if m := c.fapi2Mismatches(p.meta); len(m) > 0 {
		return "", fmt.Errorf("%w: %s", ErrRejected, m[0])
	}
	if c.cfg.RequestObjects != nil {
		return c.requestObjectURL(ctx, p, full, push, req.DPoP)
	}
	if !push {
		return full, nil
	}
	u, err := url.Parse(full)
	if err != nil {
		return "", err
	}
	return c.pushAuthorizationRequest(ctx, p, u, u.Query(), req.DPoP)
}

// CheckIssuer applies RFC 9207 §2.4 to the authorization response query:
// an iss parameter must equal the issuer exactly, and must be present when
// the provider advertises authorization_response_iss_parameter_supported,
// or under fapi2 always.
func (c *Client) CheckIssuer(ctx context.Context, query url.Values) error {
	p, err := c.provider(ctx)
	if err != nil {
		return err
	}
	iss, present := query["iss"]
	switch {
	case present && (len(iss) != 1 || iss[0] != c.cfg.Issuer):
		return fmt.Errorf("%w: iss parameter %q does not match the issuer", ErrRejected, iss)
	case !present && c.fapi2():
		return fmt.Errorf("%w: iss parameter missing; oidc.profile fapi2 requires it (RFC 9207, FAPI 2.0 §5.3.2)", ErrRejected)
	case !present && p.meta.IssParameterSupported:
		return fmt.Errorf("%w: iss parameter missing although the provider advertises it", ErrRejected)
	}
	return nil
}

// Tokens is a validated token response.
type Tokens struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	IDToken      string
	Expiry       time.Time
	// Scope is the token response's scope (RFC 6749 §5.1), its tokens
	// separated by single spaces; "" when the response has none.
	Scope string
	// RefreshExpiresIn is the refresh token's remaining lifetime when the
	// IdP states it (refresh_expires_in, as Keycloak does); 0 otherwise.
	RefreshExpiresIn time.Duration
}

// Identity is who an ID token says logged in.
type Identity struct {
	Issuer  string
	Subject string
	SID     string
	// Claims are the ID token's claims without the protocol ones (nonce,
	// hashes, aud, exp ...): what the SPA may see about its user.
	Claims map[string]any
}

// Expect is what one login asked for and its ID token must satisfy.
type Expect struct {
	Verifier string // PKCE code_verifier
	Nonce    string
	// MaxAge, when set, is the max_age sent: auth_time must be present and
	// no older (OIDC Core 3.1.3.7 #13).
	MaxAge *int
	// ACRValues, when set, were requested: the acr claim must be one of
	// them, or a step-up silently did not happen (OIDC Core 3.1.3.7 #12).
	ACRValues []string
	// DPoP is the login's key (AuthRequest.DPoP), with Config.DPoP.
	DPoP *dpop.Key
}

// Exchange redeems an authorization code with client authentication and the
// PKCE verifier (RFC 6749 §4.1.3, RFC 7636 §4.5) and validates the response
// and its ID token against want (OIDC Core 3.1.3.5 to 3.1.3.8). Nothing is
// returned unless everything passes (RFC 9700 §4.5.3.2).
func (c *Client) Exchange(ctx context.Context, code string, want Expect) (Tokens, *Identity, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return Tokens{}, nil, err
	}
	nonce := want.Nonce
	if err := c.needKey(want.DPoP); err != nil {
		return Tokens{}, nil, err
	}
	tok, err := p.oauth.Exchange(c.signedCtx(ctx, want.DPoP, nil), code, oauth2.VerifierOption(want.Verifier))
	if err != nil {
		return Tokens{}, nil, c.classify("code exchange", err)
	}
	c.tokenEndpointOK()
	t, err := checkTokenResponse(tok, want.DPoP != nil)
	if err != nil {
		return Tokens{}, nil, err
	}
	if t.IDToken == "" {
		return Tokens{}, nil, fmt.Errorf("%w: token response has no id_token", ErrRejected)
	}
	if tok.Extra("scope") == nil {
		// RFC 6749 §5.1: no scope means the scope requested.
		t.Scope = strings.Join(c.cfg.Scopes, " ")
	}
	id, err := c.verifyIDToken(ctx, p, t.IDToken, t.AccessToken, func(idt *gooidc.IDToken) error {
		if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 || nonce == "" {
			return errors.New("nonce does not match the login transaction")
		}
		return c.checkAuthContext(idt, want)
	})
	if err != nil {
		return Tokens{}, nil, err
	}
	return t, id, nil
}

func (c *Client) checkAuthContext(idt *gooidc.IDToken, want Expect) error {
	var claims struct {
		AuthTime *int64 `json:"auth_time"`
		ACR      string `json:"acr"`
	}
	if err := idt.Claims(&claims); err != nil {
		return err
	}
	if want.MaxAge != nil {
		if claims.AuthTime == nil {
			return errors.New("max_age was requested but auth_time is missing")
		}
		age := c.cfg.Now().Sub(time.Unix(*claims.AuthTime, 0))
		if age > time.Duration(*want.MaxAge)*time.Second+c.cfg.ClockSkew {
			return fmt.Errorf("authentication is %s old, more than max_age %ds", age.Round(time.Second), *want.MaxAge)
		}
	}
	if len(want.ACRValues) > 0 && !slices.Contains(want.ACRValues, claims.ACR) {
		return fmt.Errorf("acr %q is none of the requested %q", claims.ACR, want.ACRValues)
	}
	return nil
}

// Refresh redeems a refresh token (RFC 6749 §6). A response without a new
// refresh token keeps the old one.
//
// Once the token endpoint has answered 200 the old refresh token may be
// spent (rotation), so the new tokens are returned even when the new ID
// token fails validation: a JWKS outage, at_hash or iat. The Identity is
// then nil and Tokens.IDToken empty: the caller keeps the previous claims,
// and the next refresh validates again. Only a validated ID token naming
// another subject (OIDC Core §12.2) fails the refresh: the new refresh
// token is revoked and the error is ErrSubjectChanged.
//
// key is the session's DPoP key (nil without Config.DPoP): the request
// carries its proof and the new access token must be bound to it.
func (c *Client) Refresh(ctx context.Context, refreshToken, subject string, key *dpop.Key) (Tokens, *Identity, error) {
	return c.refresh(ctx, refreshToken, subject, "", key)
}

// RefreshResource redeems refreshToken for an access token restricted to
// resource (RFC 8707 §2.2), which the login's authorization request named.
// An IdP that refuses the resource (invalid_target) has a configuration
// problem, not a dead grant: that is a 503 that keeps the session.
func (c *Client) RefreshResource(ctx context.Context, refreshToken, subject, resource string, key *dpop.Key) (Tokens, *Identity, error) {
	return c.refresh(ctx, refreshToken, subject, resource, key)
}

func (c *Client) refresh(ctx context.Context, refreshToken, subject, resource string, key *dpop.Key) (Tokens, *Identity, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return Tokens{}, nil, err
	}
	if err := c.needKey(key); err != nil {
		return Tokens{}, nil, err
	}
	var extra url.Values
	if resource != "" {
		// x/oauth2 cannot add a parameter to a refresh: its HTTP client can.
		extra = url.Values{"resource": {resource}}
	}
	cctx := c.signedCtx(ctx, key, extra)
	src := p.oauth.TokenSource(cctx, &oauth2.Token{RefreshToken: refreshToken})
	tok, err := src.Token()
	if err != nil {
		op := "refresh"
		if resource != "" {
			op = fmt.Sprintf("refresh for resource %q", resource)
		}
		return Tokens{}, nil, c.classify(op, err)
	}
	c.tokenEndpointOK()
	t, err := checkTokenResponse(tok, key != nil)
	if err != nil {
		return Tokens{}, nil, err
	}
	if t.RefreshToken == "" {
		t.RefreshToken = refreshToken
	}
	if t.IDToken == "" {
		return t, nil, nil
	}
	id, err := c.verifyIDToken(ctx, p, t.IDToken, t.AccessToken, func(*gooidc.IDToken) error { return nil })
	switch {
	case err != nil:
		c.log.Warn("the refreshed ID token failed validation; keeping the new access and refresh tokens and the previous claims",
			"transient", errors.Is(err, ErrUnavailable), "error", err)
		t.IDToken = ""
		return t, nil, nil
	case id.Subject != subject:
		// The IdP issued these tokens for somebody else: none may be used,
		// and the grant must not stay alive unseen, rotated or not (the
		// session on it ends either way). The access token is revoked too,
		// for IdPs that do not cascade (RFC 7009 §2.1 says SHOULD).
		if t.RefreshToken != "" {
			if rerr := c.Revoke(context.WithoutCancel(ctx), t.RefreshToken, "refresh_token"); rerr != nil {
				c.log.Warn("revoking the refresh token of a changed subject", "error", rerr)
			}
		}
		if rerr := c.Revoke(context.WithoutCancel(ctx), t.AccessToken, "access_token"); rerr != nil {
			c.log.Warn("revoking the access token of a changed subject", "error", rerr)
		}
		return Tokens{}, nil, fmt.Errorf("%w: refreshed ID token names another subject", ErrSubjectChanged)
	}
	return t, id, nil
}

// UserInfo calls the UserInfo endpoint with accessToken and returns its
// claims, which are used only if their sub equals subject (OIDC Core §5.3.2).
// A token bound to key (nil: a Bearer token) goes with a proof (RFC 9449 §7).
func (c *Client) UserInfo(ctx context.Context, accessToken, subject string, key *dpop.Key) (map[string]any, error) {
	p, err := c.provider(ctx)
	if err != nil {
		return nil, err
	}
	// go-oidc reports a refusal as text: the transport notes the status.
	var rec *statusRecorder
	uctx := c.clientCtxVia(ctx, func(base http.RoundTripper) http.RoundTripper {
		rec = &statusRecorder{next: base}
		if key != nil {
			return c.dpopTransport(rec, key, accessToken)
		}
		return rec
	})
	ui, err := p.op.UserInfo(uctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}))
	if err != nil {
		if s := rec.get(); s == http.StatusUnauthorized || s == http.StatusForbidden {
			// RFC 6750 §3.1: invalid_token or insufficient_scope. Not an
			// outage, and not a reason to end the session: access tokens
			// for an API audience are often refused at UserInfo.
			return nil, fmt.Errorf("%w: userinfo answered %d: %v", ErrTokenNotAccepted, s, err)
		}
		return nil, fmt.Errorf("%w: userinfo: %v", ErrUnavailable, err)
	}
	if ui.Subject != subject {
		return nil, fmt.Errorf("%w: userinfo sub does not match the ID token's", ErrRejected)
	}
	claims := map[string]any{}
	if err := ui.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: userinfo: %v", ErrRejected, err)
	}
	return claims, nil
}

// EndSessionURL returns the provider's RP-initiated logout URL (OpenID
// Connect RP-Initiated Logout 1.0 §2), or false if it has none.
func (c *Client) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect, state string) (string, bool) {
	p, err := c.provider(ctx)
	if err != nil || p.meta.EndSessionEndpoint == "" {
		return "", false
	}
	u, err := url.Parse(p.meta.EndSessionEndpoint)
	if err != nil {
		return "", false
	}
	q := u.Query()
	q.Set("client_id", c.cfg.ClientID)
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
		if state != "" {
			q.Set("state", state)
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), true
}

// Revoke revokes token at the provider's revocation endpoint with client
// authentication (RFC 7009 §2.1). It returns nil when the provider has no
// revocation endpoint. Per §2.2 any 200 is success, even for unknown tokens.
func (c *Client) Revoke(ctx context.Context, token, hint string) error {
	p, err := c.provider(ctx)
	if err != nil {
		return err
	}
	if p.meta.RevocationEndpoint == "" {
		return nil
	}
	resp, err := c.postForm(ctx, p.meta.RevocationEndpoint, url.Values{"token": {token}, "token_type_hint": {hint}}, nil)
	if err != nil {
		return fmt.Errorf("%w: revocation: %v", ErrUnavailable, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: revocation answered %s", ErrUnavailable, resp.Status)
	}
	return nil
}

// postForm POSTs form to endpoint with client authentication (RFC 6749
// §2.3.1), as the token endpoint gets it.
// A request with key carries its DPoP proof (the PAR request, RFC 9449
// §10.1).
func (c *Client) postForm(ctx context.Context, endpoint string, form url.Values, key *dpop.Key) (*http.Response, error) {
	switch c.cfg.AuthMethod {
	case "client_secret_post":
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_secret", c.cfg.ClientSecret.Reveal())
	case "private_key_jwt":
		form.Set("client_id", c.cfg.ClientID) // the HTTP client's clientauth.Transport adds the assertion
	case MTLSClientAuth, MTLSSelfSigned:
		form.Set("client_id", c.cfg.ClientID) // RFC 8705 §2; the TLS client certificate authenticates
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.cfg.AuthMethod == "client_secret_basic" || c.cfg.AuthMethod == "" {
		// RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
		req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.ClientSecret.Reveal()))
	}
	if key == nil {
		return c.cfg.HTTPClient.Do(req)
	}
	hc := *c.cfg.HTTPClient
	hc.Transport = c.dpopTransport(hc.Transport, key, "")
	return hc.Do(req)
}

func (c *Client) clientCtx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient)
}

// clientCtxVia is clientCtx with a copy of the HTTP client whose transport
// wrap wraps (timeouts, redirects and TLS kept): for what x/oauth2 and
// go-oidc cannot do per call.
func (c *Client) clientCtxVia(ctx context.Context, wrap func(base http.RoundTripper) http.RoundTripper) context.Context {
	hc := *c.cfg.HTTPClient
	if hc.Transport == nil {
		hc.Transport = http.DefaultTransport
	}
	hc.Transport = wrap(hc.Transport)
	return context.WithValue(ctx, oauth2.HTTPClient, &hc)
}

// checkTokenResponse applies RFC 6749 §5.1 and OIDC Core 3.1.3.8: a
// non-empty access token of type Bearer, or DPoP when the request carried
// a proof (bound). An IdP that answers a DPoP request with a Bearer token
// did not bind it (RFC 9449 §5): the answer is refused, never used as a
// Bearer token instead.
func checkTokenResponse(tok *oauth2.Token, bound bool) (Tokens, error) {
	if tok.AccessToken == "" {
		return Tokens{}, fmt.Errorf("%w: token response has no access_token", ErrRejected)
	}
	want := "Bearer"
	if bound {
		want = "DPoP"
	}
	if !strings.EqualFold(tok.TokenType, want) {
		if bound {
			return Tokens{}, fmt.Errorf("%w: %w: token_type %q, not DPoP: the provider did not bind the access token to the DPoP key (RFC 9449 §5); enable DPoP for this client at the provider, or remove oidc.dpop", ErrRejected, ErrNotBound, truncate(errorCode(tok.TokenType), 40))
		}
		return Tokens{}, fmt.Errorf("%w: token_type %q is not Bearer", ErrRejected, tok.TokenType)
	}
	idt, _ := tok.Extra("id_token").(string)
	var rexp time.Duration
	if v, ok := tok.Extra("refresh_expires_in").(float64); ok && v > 0 {
		rexp = time.Duration(v) * time.Second
	}
	scope, _ := tok.Extra("scope").(string) // anything but a string is no scope: rules on it fail closed
	return Tokens{
		AccessToken:      tok.AccessToken,
		TokenType:        want,
		RefreshToken:     tok.RefreshToken,
		IDToken:          idt,
		Expiry:           tok.Expiry,
		Scope:            strings.Join(strings.Fields(scope), " "),
		RefreshExpiresIn: rexp,
	}, nil
}

// protocolClaims are ID token claims about the token rather than the user.
var protocolClaims = []string{"aud", "azp", "exp", "iat", "nbf", "jti", "nonce", "at_hash", "c_hash", "s_hash", "sid"}

// verifyIDToken applies OIDC Core 3.1.3.7. go-oidc checks the signature
// against the issuer's JWKS (refetched on an unknown kid; never alg none or
// HS*), iss, that aud contains client_id, and exp. This adds untrusted extra
// audiences, azp, the iat window, sub, at_hash, and the caller's check.
func (c *Client) verifyIDToken(ctx context.Context, p *provider, raw, accessToken string, check func(*gooidc.IDToken) error) (*Identity, error) {
	reject := func(format string, args ...any) (*Identity, error) {
		return nil, fmt.Errorf("%w: id_token: "+format, append([]any{ErrRejected}, args...)...)
	}
	vctx, keys := withKeyOutcome(ctx)
	keys.received = c.cfg.Now() // from the token endpoint: a new kid is a rotation
	idt, err := p.verifier.Verify(vctx, raw)
	// The ID token came from the token endpoint over TLS: a kid even a JWKS
	// fetched since it arrived lacks is a key the IdP has yet to publish,
	// or a JWKS that cannot be fetched. Try again (503).
	if e := cmp.Or(keys.unavailable, keys.unknownKid); e != nil {
		return nil, fmt.Errorf("%w: id_token: %w", ErrUnavailable, e)
	}
	if err != nil {
		return reject("%v", err)
	}
	if aud := c.untrustedAudience(idt.Audience); aud != "" {
		return reject("untrusted audience %q", aud)
	}
	var extra struct {
		AZP *string `json:"azp"`
		SID string  `json:"sid"`
	}
	claims := map[string]any{}
	if err := idt.Claims(&extra); err != nil {
		return reject("%v", err)
	}
	if err := idt.Claims(&claims); err != nil {
		return reject("%v", err)
	}
	if extra.AZP != nil && *extra.AZP != c.cfg.ClientID {
		return reject("azp %q is not this client", *extra.AZP)
	}
	if len(idt.Audience) > 1 && extra.AZP == nil {
		return reject("several audiences but no azp")
	}
	now := c.cfg.Now()
	if idt.IssuedAt.IsZero() {
		return reject("no iat")
	}
	if idt.IssuedAt.After(now.Add(c.cfg.ClockSkew)) || idt.IssuedAt.Before(now.Add(-c.cfg.MaxIDTokenAge-c.cfg.ClockSkew)) {
		return reject("iat %s is outside the accepted window", idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if idt.Subject == "" {
		return reject("no sub")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return reject("%v", err)
		}
	}
	if err := check(idt); err != nil {
		return reject("%v", err)
	}
	for _, k := range protocolClaims {
		delete(claims, k)
	}
	return &Identity{Issuer: idt.Issuer, Subject: idt.Subject, SID: extra.SID, Claims: claims}, nil
}

// untrustedAudience returns an audience that is neither this client nor a
// trusted one (OIDC Core 3.1.3.7 #3), or "".
func (c *Client) untrustedAudience(auds []string) string {
	for _, aud := range auds {
		if aud != c.cfg.ClientID && !slices.Contains(c.cfg.TrustedAudiences, aud) {
			return aud
		}
	}
	return ""
}

// MarshalClaims is json.Marshal for claims that came from JSON.
func MarshalClaims(claims map[string]any) json.RawMessage {
	b, _ := json.Marshal(claims)
	return b
}

// statusRecorder notes the status of the last response it carried.
type statusRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	status int
}

func (r *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if resp != nil {
		r.mu.Lock()
		r.status = resp.StatusCode
		r.mu.Unlock()
	}
	return resp, err
}

func (r *statusRecorder) get() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

package idp

// The in-memory op.Storage below is adapted from the zitadel/oidc example
// (github.com/zitadel/oidc example/server/storage, Apache License 2.0),
// cut down to what the demo needs: one confidential client, one user, the
// authorization code flow with PKCE S256, refresh tokens with rotation,
// JWT access tokens, userinfo, revocation and end-session. The library
// does every protocol step and mints and signs every token; this file only
// remembers things.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// refreshTokenTTL bounds how long a refresh token may be used.
const refreshTokenTTL = 12 * time.Hour

type storage struct {
	mu            sync.Mutex
	client        *client
	user          User
	authRequests  map[string]*authRequest
	codes         map[string]string // code → auth request ID
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken // by value, which is also its ID
	key           signingKey
	accessTTL     time.Duration
	refreshes     int
	revocations   int
}

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)

func newStorage(c *client, u User, accessTTL time.Duration) (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &storage{
		client:        c,
		user:          u,
		authRequests:  map[string]*authRequest{},
		codes:         map[string]string{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		key:           signingKey{id: rand.Text(), key: key},
		accessTTL:     accessTTL,
	}, nil
}

// checkPassword marks the auth request id as authenticated when the
// credentials are the demo user's.
func (s *storage) checkPassword(username, password, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok {
		return errors.New("this sign-in request has expired; go back to the app and log in again")
	}
	if username != s.user.Username || password != s.user.Password {
		return errors.New("wrong username or password")
	}
	req.subject, req.done, req.authTime = s.user.Subject, true, time.Now()
	return nil
}

// CreateAuthRequest stores a validated authorization request. PKCE with
// S256 is required (RFC 9700 §2.1.1); the library checks the verifier.
func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(r.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	req := &authRequest{
		id: rand.Text(), created: time.Now(), clientID: r.ClientID, redirectURI: r.RedirectURI,
		state: r.State, nonce: r.Nonce, scopes: r.Scopes, responseType: r.ResponseType,
		responseMode: r.ResponseMode, challenge: &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
	}
	s.authRequests[req.id] = req
	return req, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.authRequests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return req, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest is called once the code is redeemed: the code is
// single-use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccessToken(clientOf(r), r.GetSubject(), r.GetAudience(), r.GetScopes(), "")
	return t.id, t.expiry, nil
}

// CreateAccessAndRefreshTokens issues an access token and a refresh token.
// On a refresh (currentRefreshToken set) the old refresh token is consumed
// and a new one issued: rotation (RFC 9700 §4.14.2).
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, r op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := &refreshToken{value: rand.Text() + rand.Text()}
	if currentRefreshToken == "" {
		req, ok := r.(*authRequest)
		if !ok {
			return "", "", time.Time{}, errors.New("unsupported token request")
		}
		rt.clientID, rt.subject, rt.authTime, rt.amr = req.clientID, req.subject, req.authTime, req.GetAMR()
		rt.audience, rt.scopes = req.GetAudience(), req.scopes
	} else {
		old, ok := s.refreshTokens[currentRefreshToken]
		if !ok || time.Now().After(old.expiry) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
		delete(s.refreshTokens, currentRefreshToken)
		delete(s.accessTokens, old.accessTokenID)
		*rt = refreshToken{value: rt.value, clientID: old.clientID, subject: old.subject, authTime: old.authTime,
			amr: old.amr, audience: old.audience, scopes: r.GetScopes()}
		s.refreshes++
	}
	rt.expiry = time.Now().Add(refreshTokenTTL)
	at := s.newAccessToken(rt.clientID, rt.subject, rt.audience, rt.scopes, rt.value)
	rt.accessTokenID = at.id
	s.refreshTokens[rt.value] = rt
	return at.id, rt.value, at.expiry, nil
}

// newAccessToken records an access token; the library turns it into a
// signed JWT whose jti is its id. s.mu must be held.
func (s *storage) newAccessToken(clientID, subject string, audience, scopes []string, refresh string) *accessToken {
	t := &accessToken{id: rand.Text(), clientID: clientID, subject: subject, audience: audience,
		scopes: scopes, refreshToken: refresh, expiry: time.Now().Add(s.accessTTL)}
	s.accessTokens[t.id] = t
	return t
}

func clientOf(r op.TokenRequest) string {
	switch r := r.(type) {
	case *authRequest:
		return r.clientID
	case *refreshToken:
		return r.clientID
	}
	return ""
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, value string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[value]
	if !ok || time.Now().After(rt.expiry) {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh_token")
	}
	c := *rt // the library may narrow its scopes
	return &c, nil
}

// TerminateSession ends every token of userID at clientID (end_session).
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, rt := range s.refreshTokens {
		if rt.subject == userID && rt.clientID == clientID {
			delete(s.refreshTokens, v)
		}
	}
	for id, at := range s.accessTokens {
		if at.subject == userID && at.clientID == clientID {
			delete(s.accessTokens, id)
		}
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, value string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[value]
	if !ok || rt.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.value, nil
}

// RevokeToken implements RFC 7009: a refresh token takes its access token
// with it. Unknown tokens are not an error (§2.2).
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.accessTokens[tokenOrID]; ok {
		if at.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		s.revocations++
		return nil
	}
	if rt, ok := s.refreshTokens[tokenOrID]; ok {
		if rt.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refreshTokens, tokenOrID)
		delete(s.accessTokens, rt.accessTokenID)
		s.revocations++
	}
	return nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return &s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.id {
		return nil, errors.New("client not found")
	}
	return s.client, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.client.id || !s.client.checkSecret(secret) {
		return errors.New("invalid client credentials")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in the library; SetUserinfoFromRequest
// does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	return s.userinfo(ui, r.GetSubject(), scopes)
}

// SetUserinfoFromToken answers the UserInfo endpoint for a live access token.
func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	at, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(at.expiry) {
		return errors.New("access token is invalid or expired")
	}
	return s.userinfo(ui, at.subject, at.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, ir *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	at, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(at.expiry) || !slices.Contains(at.audience, clientID) {
		return errors.New("token is not active")
	}
	ui := new(oidc.UserInfo)
	if err := s.userinfo(ui, subject, at.scopes); err != nil {
		return err
	}
	ir.SetUserInfo(ui)
	ir.Scope, ir.ClientID, ir.Expiration = at.scopes, at.clientID, oidc.FromTime(at.expiry)
	return nil
}

func (s *storage) userinfo(ui *oidc.UserInfo, subject string, scopes []string) error {
	u := s.user
	if subject != u.Subject {
		return errors.New("user not found")
	}
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeOpenID:
			ui.Subject = u.Subject
		case oidc.ScopeProfile:
			ui.Name, ui.GivenName, ui.FamilyName = u.GivenName+" "+u.FamilyName, u.GivenName, u.FamilyName
			ui.PreferredUsername = u.Username
		case oidc.ScopeEmail:
			ui.Email, ui.EmailVerified = u.Email, oidc.Bool(u.EmailVerified)
		}
	}
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID serves the JWT Profile grant, which the demo does
// not offer.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile grant not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grant not supported")
}

func (s *storage) Health(context.Context) error { return nil }

func (s *storage) counts() (refreshes, revocations int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes, s.revocations
}

// authRequest is an authorization request in flight (op.AuthRequest).
type authRequest struct {
	id, clientID, redirectURI, state, nonce string
	created, authTime                       time.Time
	scopes                                  []string
	responseType                            oidc.ResponseType
	responseMode                            oidc.ResponseMode
	challenge                               *oidc.CodeChallenge
	subject                                 string
	done                                    bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }
func (a *authRequest) GetAMR() []string {
	if a.done {
		return []string{"pwd"}
	}
	return nil
}

// refreshToken is a refresh token and the grant it carries
// (op.RefreshTokenRequest).
type refreshToken struct {
	value, clientID, subject, accessTokenID string
	authTime, expiry                        time.Time
	amr, audience, scopes                   []string
}

func (r *refreshToken) GetAMR() []string                 { return r.amr }
func (r *refreshToken) GetAudience() []string            { return r.audience }
func (r *refreshToken) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshToken) GetClientID() string              { return r.clientID }
func (r *refreshToken) GetScopes() []string              { return r.scopes }
func (r *refreshToken) GetSubject() string               { return r.subject }
func (r *refreshToken) SetCurrentScopes(scopes []string) { r.scopes = scopes }

type accessToken struct {
	id, clientID, subject, refreshToken string
	audience, scopes                    []string
	expiry                              time.Time
}

// signingKey is the OP's RSA key (op.SigningKey); publicKey is its public
// half as published in the JWKS (op.Key).
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) ID() string                         { return k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

// client is the BFF, a confidential web client (op.Client).
type client struct {
	id, secret          string
	redirectURIs        []string
	postLogoutRedirects []string
}

func (c *client) checkSecret(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) == 1
}

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return c.postLogoutRedirects }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) LoginURL(id string) string           { return "/login?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return time.Hour }
func (c *client) DevMode() bool                       { return false }
func (c *client) IsScopeAllowed(string) bool          { return false }
func (c *client) ClockSkew() time.Duration            { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IDTokenUserinfoClaimsAssertion puts the profile and email claims in the
// ID token too, so the BFF can show who is logged in without a UserInfo
// call.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

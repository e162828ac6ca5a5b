package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
)

// checkSessionBody is the answer of GET /auth/checksession (BBA §6.1.2.1):
// whether a session is active, who is logged in, and when the session ends
// if nothing else happens, so the SPA can warn its user. Never a token.
type checkSessionBody struct {
	LoggedIn  bool            `json:"loggedIn"`
	User      json.RawMessage `json:"user,omitempty"`
	ExpiresAt *time.Time      `json:"expiresAt,omitempty"`
}

func (s *Server) checkSession(w http.ResponseWriter, r *http.Request) error {
	l, err := s.sessions.Load(r.Context(), r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		httperr.WriteJSON(w, http.StatusOK, checkSessionBody{LoggedIn: false})
		return nil
	case err != nil:
		return httperr.Unavailable(err)
	}
	s.sessions.Touch(r.Context(), l)
	info(r).session = l.Key
	exp := l.Deadline(s.sessions.IdleTimeout()).UTC().Truncate(time.Second)
	httperr.WriteJSON(w, http.StatusOK, checkSessionBody{LoggedIn: true, User: l.Claims, ExpiresAt: &exp})
	return nil
}

// userInfo answers GET /auth/userinfo with the IdP's UserInfo claims,
// fetched with the session's access token; they are used only if their sub
// matches the session's (OIDC Core §5.3.2).
func (s *Server) userInfo(w http.ResponseWriter, r *http.Request) error {
	// It spends the access token at the IdP like any API call does, so it
	// takes the same CSRF check as proxied routes.
	if err := s.checkCSRF(r, true); err != nil {
		return err
	}
	l, at, err := s.sessionToken(w, r)
	if err != nil {
		return err
	}
	key, err := l.DPoPKey()
	if err != nil {
		return httperr.Unavailable(err)
	}
	claims, err := s.idp.UserInfo(r.Context(), at, l.Subject, key)
	switch {
	case errors.Is(err, oidc.ErrTokenNotAccepted):
		// The session stays valid (a 401 would send the SPA to a login that
		// cannot help): the IdP refuses this access token at UserInfo.
		return httperr.New(http.StatusForbidden, "token_not_accepted", "the identity provider did not accept the session's access token at its UserInfo endpoint", err)
	case errors.Is(err, oidc.ErrRejected):
		return httperr.New(http.StatusBadGateway, "bad_gateway", "the identity provider's answer was rejected", err)
	case err != nil:
		return httperr.Unavailable(err)
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"userInfo": claims})
	return nil
}

// Identity is the logged-in user as local API handlers see it.
type Identity struct {
	Issuer  string
	Subject string
	// Claims are the ID token's claims about the user (name, email, ...).
	Claims map[string]any
	// Scope is the space-delimited scope granted to the user's access
	// token (RFC 6749 §3.3); "" when unknown.
	Scope string
}

type userKey struct{}

func withUser(ctx context.Context, l *session.Loaded) context.Context {
	id := &Identity{Issuer: l.Issuer, Subject: l.Subject, Claims: map[string]any{}, Scope: l.Tokens.Scope}
	json.Unmarshal(l.Claims, &id.Claims)
	return context.WithValue(ctx, userKey{}, id)
}

// UserFrom returns the user of a request served by a local API handler.
func UserFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(userKey{}).(*Identity)
	return id, ok
}

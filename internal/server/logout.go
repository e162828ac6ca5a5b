package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/session"
)

// logout ends the session: the record is deleted, the cookie expired, the
// refresh token revoked (RFC 7009), and the browser sent to the IdP's
// end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0) or the
// landing page.
//
// POST needs the CSRF check and answers JSON with the URL to navigate to.
// GET exists for top-level navigation: the session cookie is
// SameSite=Strict, so a cross-site GET arrives without it and ends nothing.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if err := s.checkCSRF(r, false); err != nil {
			noteError(r, err)
			httperr.Write(w, err)
			return
		}
	}
	target := s.landing
	l, err := s.sessions.Load(r.Context(), r)
	switch {
	case err == nil:
		info(r).session = l.Key
		if err := s.sessions.Delete(r.Context(), w, l.Key); err != nil {
			// The session must not outlive a logout the user asked for.
			noteError(r, err)
			httperr.Write(w, httperr.Unavailable(err))
			return
		}
		s.log.Info("logout", "audit", true, "event", "logout", "sub", l.Subject, "session", l.Key.Short())
		s.revoke(r.Context(), l)
		if u, ok := s.idp.EndSessionURL(r.Context(), l.Tokens.IDToken, s.cfg.OIDC.PostLogoutRedirectURL, ""); ok {
			target = u
		}
	case errors.Is(err, session.ErrNoSession):
		session.ClearCookie(w)
	default:
		noteError(r, err)
		httperr.Write(w, httperr.Unavailable(err))
		return
	}
	if r.Method == http.MethodPost {
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"loggedOut": true, "logoutUrl": target})
		return
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// revoke revokes the session's refresh token. A failure is logged and does
// not block the logout: the session is already gone from moat.
func (s *Server) revoke(ctx context.Context, l *session.Loaded) {
	if l.Tokens.RefreshToken == "" {
		return
	}
	if err := s.idp.Revoke(context.WithoutCancel(ctx), l.Tokens.RefreshToken, "refresh_token"); err != nil {
		s.log.Warn("revoking the refresh token at logout failed", "sub", l.Subject, "session", l.Key.Short(), "error", err)
	}
}

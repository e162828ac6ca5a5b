package server

import (
	"errors"
	"net/http"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/session"
)

// logout ends the session: the record is deleted, the cookie expired, the
// refresh token revoked in the background (RFC 7009; a failure never blocks
// the logout), and the browser sent to the IdP's end_session_endpoint with
// id_token_hint, client_id, post_logout_redirect_uri and state (OpenID
// Connect RP-Initiated Logout 1.0 §2), or to the landing page when the IdP
// has none.
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
		s.revoker.Add(revoke.Job{Token: l.Tokens.RefreshToken, Subject: l.Subject, Session: l.Key.Short()})
		if u, ok := s.idp.EndSessionURL(r.Context(), l.Tokens.IDToken, s.cfg.OIDC.PostLogoutRedirectURL, randomString()); ok {
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

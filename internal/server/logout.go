package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/session"
)

// logout ends the session: the record is deleted, the cookie expired, the
// refresh token revoked in the background (RFC 7009; a failure never blocks
// the logout), and the browser sent to the IdP's end_session_endpoint with
// id_token_hint, client_id and post_logout_redirect_uri (OpenID Connect
// RP-Initiated Logout 1.0 §2), or to the landing page when the IdP has none.
// It sends no state (optional in §2): the landing page does nothing a forged
// return could abuse, and the IdP would append an unchecked state to it.
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
		if u, ok := s.idp.EndSessionURL(r.Context(), l.Tokens.IDToken, s.cfg.PostLogoutRedirect(), ""); ok {
			target = u
		}
	case errors.Is(err, session.ErrNoSession):
		// Nothing to end. A stale cookie is cleared only for a POST, which
		// passed the CSRF check: a cross-site link to GET /auth/logout must
		// not be able to delete anyone's cookie.
		if r.Method == http.MethodPost {
			s.sessions.ClearCookie(w)
		}
	default:
		noteError(r, err)
		httperr.Write(w, httperr.Unavailable(err))
		return
	}
	if r.Method == http.MethodPost {
		if target != s.landing {
			// The end-session URL carries the ID token as id_token_hint. A
			// JSON body is readable by script, so the SPA gets a one-time
			// moat URL instead, whose redirect hands the hint to the OP
			// through a navigation that script cannot read.
			handle, err := s.parkEndSession(r, target)
			if err != nil {
				noteError(r, err)
				target = s.landing // logged out here; the IdP session stays
			} else {
				target = s.public.JoinPath("/auth/logout/continue").String() + "?h=" + handle
			}
		}
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"loggedOut": true, "logoutUrl": target})
		return
	}
	redirect(w, target)
}

const endSessionTTL = 2 * time.Minute

func (s *Server) endSessionKey(handle string) session.Key { return s.key("endsession", []byte(handle)) }

// parkEndSession stores the end-session URL, sealed, under a fresh one-time
// handle in the shared store (the navigation may land on another replica).
func (s *Server) parkEndSession(r *http.Request, target string) (string, error) {
	handle := randomString()
	key := s.endSessionKey(handle)
	data, err := s.sessions.Seal(key, target)
	if err != nil {
		return "", err
	}
	_, err = s.sessions.Store().Set(r.Context(), key, session.Record{Data: data}, endSessionTTL)
	return handle, err
}

// continueLogout redirects to a parked end-session URL, once. An unknown or
// used handle goes to the landing page: the local logout already happened.
func (s *Server) continueLogout(w http.ResponseWriter, r *http.Request) {
	target := s.landing
	if h := r.URL.Query().Get("h"); h != "" {
		key := s.endSessionKey(h)
		if rec, err := s.sessions.Store().Take(r.Context(), key); err == nil {
			var u string
			if err := s.sessions.Open(key, rec.Data, &u); err == nil {
				target = u
			}
		}
	}
	redirect(w, target)
}

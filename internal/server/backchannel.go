package server

import (
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
)

// backchannelLogout implements OpenID Connect Back-Channel Logout 1.0: the
// OP POSTs a signed logout token (§2.5) and every session it names ends, on
// every replica, since sessions live in the shared store.
//
// The endpoint is exempt from the CSRF header and cookie checks by design:
// it is called server-to-server by the OP, carries no cookie (§2.5), and is
// authenticated by the logout token's signature instead, which is validated
// completely (§2.6). Any failure is a 400 (§2.8); responses are no-store.
func (s *Server) backchannelLogout(w http.ResponseWriter, r *http.Request) error {
	bad := func(msg string, err error) error {
		s.metrics.Backchannel("rejected")
		return httperr.New(http.StatusBadRequest, "invalid_request", msg, err)
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return bad("expected a form-encoded logout_token", nil)
	}
	raw := r.PostFormValue("logout_token")
	if raw == "" {
		return bad("logout_token is missing", nil)
	}
	lt, err := s.idp.VerifyLogoutToken(r.Context(), raw)
	switch {
	case errors.Is(err, oidc.ErrUnavailable):
		return httperr.Unavailable(err) // the OP may retry once its keys can be fetched
	case err != nil:
		s.log.Warn("back-channel logout token rejected", "audit", true, "event", "backchannel_rejected", "error", err)
		return bad("invalid logout token", err)
	}
	// §2.6 step 8: a jti seen before is a replay. The mark lives in the
	// shared store, so a replay to another replica is caught too.
	ttl := time.Until(lt.Expiry) + s.cfg.OIDC.ClockSkew.D()
	if ttl < time.Minute {
		ttl = time.Minute
	}
	jti := s.key("jti", []byte(lt.Issuer+"\x00"+lt.JTI))
	if _, err := s.sessions.Store().CompareAndSwap(r.Context(), jti, 0, session.Record{}, ttl); errors.Is(err, session.ErrConflict) {
		s.log.Warn("back-channel logout token replayed", "audit", true, "event", "backchannel_rejected", "sub", lt.Subject)
		s.metrics.Backchannel("replayed")
		return httperr.New(http.StatusBadRequest, "invalid_request", "logout token already used", errors.New("replayed jti"))
	} else if err != nil {
		return httperr.Unavailable(err)
	}
	ended, err := s.sessions.DeleteBy(r.Context(), lt.Subject, lt.SID)
	if err != nil {
		s.sessions.Store().Delete(r.Context(), jti) // let the OP's retry through
		return httperr.Unavailable(err)
	}
	shorts := make([]string, len(ended))
	for i, k := range ended {
		shorts[i] = k.Short()
	}
	s.log.Info("back-channel logout", "audit", true, "event", "backchannel_logout", "sub", lt.Subject, "sid_given", lt.SID != "",
		"sessions", len(ended), "session", shorts)
	s.metrics.Backchannel("ok")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

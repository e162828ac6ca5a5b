package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/policy"
	"github.com/moat-bff/moat/internal/session"
)

// require applies a route's rules (routes[].require) to the session's ID
// token claims and granted scope: 403 forbidden when the user lacks a
// right, 401
// step_up_required with the login URL when a stronger or fresher login
// can meet them (RFC 9470 §3; OIDC Core §3.1.2.1 acr_values, max_age).
// A nil l (no user) has no claims.
func (s *Server) require(p *policy.Policy, l *session.Loaded, r *http.Request) error {
	if p == nil {
		return nil
	}
	var claims map[string]any
	var scope string
	if l != nil {
		var err error
		if claims, err = l.ClaimsMap(); err != nil {
			return httperr.New(http.StatusForbidden, "forbidden", "this session may not use this route", err)
		}
		scope = l.Tokens.Scope
	}
	return decide(p.Check(claims, scope, s.clock(info(r))))
}

// Require wraps h, a local handler registered with Handle, with the rules
// of p, judged on the claims of the request's user at the request's
// reading of the session manager's clock (the one that loaded the
// session), as routes[].require is.
func Require(p *policy.Policy, h http.Handler) http.Handler {
	if p == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var claims map[string]any
		var scope string
		if id, ok := UserFrom(r.Context()); ok {
			claims, scope = id.Claims, id.Scope
		}
		now := info(r).now
		if now.IsZero() { // not served through the Server: no session was loaded
			now = time.Now()
		}
		if err := decide(p.Check(claims, scope, now)); err != nil {
			noteError(r, err)
			httperr.Write(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func decide(out policy.Outcome) error {
	switch {
	case out.Forbidden:
		return httperr.New(http.StatusForbidden, "forbidden", "this session may not use this route", errors.New("unmet rule: "+out.Reason))
	case out.StepUp != "":
		e := httperr.New(http.StatusUnauthorized, "step_up_required", "this route needs a stronger or more recent login", errors.New("unmet rule: "+out.Reason))
		e.Login = out.StepUp
		return e
	}
	return nil
}

package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/proxy"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/token"
)

// Decision is moat's verdict on an API call that a gateway proxies itself
// (forward-auth): the route the call matched and, when the route carries a
// token, the session and the access token for the upstream request.
type Decision struct {
	Route       *proxy.Route // nil for an allowed CORS preflight
	Session     *session.Loaded
	AccessToken string
}

// Authorizer returns a handler that judges each request it is given, the
// original API call as a gateway saw it, exactly as a proxied call is
// judged before it is forwarded: the per-IP limit, CORS origin check,
// route by longest prefix, the route's methods, CSRF, session, per-session
// limit and access token (refreshed if due, once across replicas). It
// answers refusals with moat's JSON errors and hands grants to allow.
// Each request gets its access log line and metrics as on the main
// listener.
func (s *Server) Authorizer(allow func(http.ResponseWriter, *http.Request, Decision)) http.Handler {
	return chain(api(func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.authorize(w, r)
		if err != nil {
			return err
		}
		allow(w, r, d)
		return nil
	}), s.recoverer, s.observe)
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (Decision, error) {
	if err := s.limitIP(r); err != nil {
		return Decision{}, err
	}
	if origin := r.Header.Get("Origin"); r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		// A preflight carries no cookie; it passes for an allowed origin
		// only, as on the main listener (csrf.CORS).
		if !slices.Contains(s.cfg.CORS.AllowedOrigins, origin) {
			return Decision{}, httperr.New(http.StatusForbidden, "cors", "cross-origin request from an origin that is not allowed", nil)
		}
		return Decision{}, nil
	}
	rt, _, ok := s.routes.Match(r.URL.Path)
	if !ok {
		return Decision{}, httperr.New(http.StatusNotFound, "not_found", "no route for this path", nil)
	}
	info(r).route = rt.Name
	l, at, err := s.authorizeRoute(w, r, rt)
	if err != nil {
		return Decision{}, err
	}
	return Decision{Route: rt, Session: l, AccessToken: at}, nil
}

// authorizeRoute applies rt's method list and the CSRF policy to r, then,
// when rt carries a token, loads the session and its access token, and
// applies the route's rules (routes[].require) whatever its token type: a
// call without a user meets none of them. Both the proxy (proxied) and
// forward-auth (Authorizer) decide through it.
func (s *Server) authorizeRoute(w http.ResponseWriter, r *http.Request, rt *proxy.Route) (*session.Loaded, string, error) {
	l, at, err := s.routeToken(w, r, rt)
	if err != nil {
		return nil, "", err
	}
	// Config validation allows rules only with token: user, but a route
	// built otherwise must not skip them: they are judged here, once.
	if err := s.require(rt.Require, l, r); err != nil {
		return nil, "", err
	}
	if rt.Exchange != nil && l != nil {
		if at, err = s.exchangedToken(w, r, l, at, rt.Exchange); err != nil {
			return nil, "", err
		}
	}
	return l, at, nil
}

// routeToken is authorizeRoute's checks and token, before the rules.
func (s *Server) routeToken(w http.ResponseWriter, r *http.Request, rt *proxy.Route) (*session.Loaded, string, error) {
	if !rt.Allows(r.Method) {
		e := httperr.New(http.StatusMethodNotAllowed, "method_not_allowed", "this route does not accept "+r.Method, nil)
		e.Header = http.Header{"Allow": {strings.Join(rt.Methods, ", ")}}
		return nil, "", e
	}
	if rt.WebSocket && proxy.IsUpgrade(r) {
		// Browsers cannot add X-CSRF to a WebSocket handshake and do not
		// apply CORS to it: the Origin must be one moat trusts.
		if err := s.csrf.CheckOrigin(r); err != nil {
			return nil, "", httperr.New(http.StatusForbidden, "csrf", "WebSocket handshake from an origin that is not allowed", err)
		}
	} else if err := s.checkCSRF(r, true); err != nil {
		return nil, "", err
	}
	switch tokenType(rt) {
	case config.TokenNone:
		return nil, "", nil
	case config.TokenClient:
		at, err := s.clientToken(r, rt)
		return nil, at, err
	case config.TokenUserOrClient, config.TokenOptionalUser:
		l, at, err := s.sessionToken(w, r)
		var he *httperr.Error
		if err == nil || !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
			return l, at, err // a user, or an outage or limit that no fallback may hide
		}
		if tokenType(rt) == config.TokenOptionalUser {
			return nil, "", nil
		}
		at, err = s.clientToken(r, rt)
		return nil, at, err
	}
	return s.sessionTokenFor(w, r, rt.Resource)
}

// replaceRefusedAfter: a session token the IdP refuses as a token
// exchange's subject is refreshed once it is at least this old (it may
// have been revoked); a younger one is not, so that an IdP refusing every
// exchange causes at most one refresh per session this often.
const replaceRefusedAfter = time.Minute

// exchangedToken exchanges the session's access token at for one meant for
// x's target alone (RFC 8693), writing l back on a refresh. A subject
// token refused (invalid_grant) is replaced once by a refresh, if the
// session has a refresh token and the token is old enough; a dead refresh
// token then ends the session (401). Any other failure is a 503 that logs
// nobody out.
func (s *Server) exchangedToken(w http.ResponseWriter, r *http.Request, l *session.Loaded, at string, x *proxy.Exchange) (string, error) {
	if s.exchanges == nil {
		return "", httperr.Unavailable(errors.New("no token exchange source"))
	}
	req := oidc.ExchangeRequest{Audience: x.Audience, Resource: x.Resource, Scope: x.Scope}
	xt, err := s.exchanges.Token(r.Context(), string(l.Key), at, req)
	if errors.Is(err, oidc.ErrSubjectTokenRefused) && l.Tokens.RefreshToken != "" &&
		s.sessions.Now().Sub(l.Tokens.Obtained) >= replaceRefusedAfter {
		at, err = s.tokens.ReplaceAccessToken(r.Context(), l, at)
		switch {
		case errors.Is(err, token.ErrSessionEnded):
			s.sessions.ClearCookie(w)
			return "", httperr.Unauthenticated(err)
		case err != nil:
			return "", httperr.Unavailable(err)
		}
		xt, err = s.exchanges.Token(r.Context(), string(l.Key), at, req)
	}
	if err != nil {
		return "", httperr.Unavailable(err)
	}
	return xt, nil
}

// tokenType is rt's routes[].token; routes built without one (tests,
// embedders) say it with Token alone.
func tokenType(rt *proxy.Route) string {
	switch {
	case rt.TokenType != "":
		return rt.TokenType
	case rt.Token:
		return config.TokenUser
	}
	return config.TokenNone
}

// clientToken returns moat's client-credentials token for rt (RFC 6749
// §4.4). An IdP that cannot give one is an outage: 503, nobody logged out.
func (s *Server) clientToken(r *http.Request, rt *proxy.Route) (string, error) {
	if s.clientTokens == nil {
		return "", httperr.Unavailable(errors.New("no client token source"))
	}
	at, err := s.clientTokens.Token(r.Context(), rt.ClientScopes)
	if err != nil {
		return "", httperr.Unavailable(err)
	}
	return at, nil
}

// limitIP applies the per-IP rate limit to r's client.
func (s *Server) limitIP(r *http.Request) error {
	ri := info(r)
	if ok, wait := s.limits.perIP.AllowAt(s.limits.key(ri.ip), s.clock(ri)); !ok {
		s.metrics.RateLimited("ip")
		return tooMany(wait)
	}
	return nil
}

// withToken puts the access token (and its DPoP key, nil for a Bearer
// token) where the proxy finds it: in the proxy state observe's context
// holds (no request copy), or in a context of its own.
func withToken(ctx context.Context, at string, key *dpop.Key) context.Context {
	if !proxy.SetToken(ctx, at, key) {
		ctx = proxy.WithToken(ctx, at, key)
	}
	return ctx
}

// boundKey returns the DPoP key the token authorizeRoute gave for rt is
// bound to, or nil for a Bearer token: the session's own and resource
// tokens are bound to the session's key (oidc.dpop); client-credentials
// and exchanged tokens are Bearer tokens.
func (s *Server) boundKey(l *session.Loaded, rt *proxy.Route) (*dpop.Key, error) {
	if l == nil || rt.Exchange != nil {
		return nil, nil
	}
	key, err := l.DPoPKey()
	if err != nil {
		return nil, httperr.Unavailable(err)
	}
	return key, nil
}

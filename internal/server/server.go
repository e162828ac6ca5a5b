// Package server is moat's HTTP surface: the /auth endpoints of the
// BFF pattern (draft-ietf-oauth-browser-based-apps §6.1.2), the proxied
// routes, local API handlers behind the session, health, and the middleware
// every request passes (request ID, access log, recovery, security headers,
// CORS, CSRF).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moat-bff/moat/internal/clienttoken"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/exchange"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/logbuf"
	"github.com/moat-bff/moat/internal/metrics"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/pending"
	"github.com/moat-bff/moat/internal/proxy"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/token"
)

// Deps are the parts a Server is built from.
type Deps struct {
	Config   *config.Config
	Logger   *slog.Logger
	Sessions *session.Manager
	Tokens   *token.Manager
	IdP      *oidc.Client
	Routes   *proxy.Table
	Revoker  *revoke.Queue
	Metrics  *metrics.Metrics // nil records nothing
	// ClientJWKS, when set, is served at /auth/jwks: the public keys of
	// private_key_jwt client authentication, as JSON.
	ClientJWKS []byte
	// ClientTokens hands out client-credentials tokens for token: client
	// and user_or_client routes.
	ClientTokens *clienttoken.Cache
	// Exchanges hands out RFC 8693 exchanged tokens for routes with
	// token_exchange.
	Exchanges *exchange.Cache
	// Pending caps login transactions in flight; nil builds one from
	// Config (without metrics).
	Pending *pending.Cap
	// Sockets counts open WebSockets per session; a Server of its own when nil.
	Sockets *Sockets
}

// Server is an http.Handler for moat's main listener.
type Server struct {
	cfg          *config.Config
	log          *slog.Logger
	access       *logbuf.Handler // log's handler when it has the access-log fast path
	sessions     *session.Manager
	tokens       *token.Manager
	idp          *oidc.Client
	routes       *proxy.Table
	revoker      *revoke.Queue
	limits       *limits
	pending      *pending.Cap
	metrics      *metrics.Metrics
	clientTokens *clienttoken.Cache
	exchanges    *exchange.Cache
	csrf         *csrf.Policy
	mux          *http.ServeMux
	sockets      *Sockets
	handler      http.Handler

	probeMu sync.Mutex
	probes  map[string]string
	probed  time.Time
	ready   readyCache

	public   *url.URL // moat's origin, and the path of a mounted frontend
	mount    string   // that path ("" at the root), which the gateway strips
	frontend *url.URL // the SPA's landing page; nil when moat serves it
	landing  string   // where the browser goes after login/logout by default
}

// New assembles the handler tree.
func New(d Deps) (*Server, error) {
	cfg := d.Config
	public := config.MustURL(cfg.PublicURL)
	self := public.Scheme + "://" + public.Host
	policy, err := csrf.New(cfg.CSRF.Mode, self, cfg.CORS.AllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("csrf: %w", err)
	}
	s := &Server{
		cfg: cfg, log: d.Logger, sessions: d.Sessions, tokens: d.Tokens, idp: d.IdP, routes: d.Routes, revoker: d.Revoker, metrics: d.Metrics, clientTokens: d.ClientTokens, exchanges: d.Exchanges,
		csrf: policy, mux: http.NewServeMux(), public: public, mount: strings.TrimSuffix(public.EscapedPath(), "/"),
		limits: newLimits(cfg, d.Sessions.Now), pending: d.Pending, sockets: d.Sockets,
	}
	if s.sockets == nil {
		s.sockets = NewSockets()
	}
	if s.pending == nil {
		s.pending = pending.New(pending.Options{
			PerReplica: cfg.Limits.PendingLogins.PerReplica, PerStore: cfg.Limits.PendingLogins.PerStore,
			Timeout: cfg.Session.LoginTimeout.D(), Store: d.Sessions.Store(), Now: d.Sessions.Now,
		})
	}
	if h, ok := d.Logger.Handler().(*logbuf.Handler); ok {
		s.access = h
	}
	s.landing = s.mount + "/"
	if cfg.FrontendURL != "" {
		s.frontend = config.MustURL(cfg.FrontendURL)
		s.landing = s.frontend.String()
	}

	s.handle("/auth/login", s.navHandler(s.login), http.MethodGet)
	s.handle("/auth/callback", s.navHandler(s.callback), http.MethodGet)
	s.handle("/auth/checksession", api(s.checkSession), http.MethodGet)
	s.handle("/auth/userinfo", api(s.userInfo), http.MethodGet)
	s.handle("/auth/logout", http.HandlerFunc(s.logout), http.MethodGet, http.MethodPost)
	s.handle("/auth/logout/continue", http.HandlerFunc(s.continueLogout), http.MethodGet)
	s.handle("/auth/backchannel-logout", api(s.backchannelLogout), http.MethodPost)
	if d.ClientJWKS != nil {
		// The public half of the private_key_jwt keys, for IdPs that fetch
		// a client's jwks_uri (OIDC Dynamic Client Registration §2).
		s.handle("/auth/jwks", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			w.Write(d.ClientJWKS)
		}), http.MethodGet)
	}
	s.mux.Handle("/auth/", notFound())
	// Forward-auth answers carry access tokens: never here, only on
	// forward_auth.listen.
	s.mux.Handle(config.ForwardAuthPrefix, notFound())
	s.handle("/healthz", api(s.healthz), http.MethodGet)
	s.handle("/readyz", api(s.readyz), http.MethodGet)
	for _, rt := range d.Routes.Routes() {
		_, h, _ := d.Routes.Match(rt.Prefix)
		s.mux.Handle(rt.Prefix, s.proxied(rt, h))
	}
	s.handler = chain(s.mux,
		s.recoverer,
		s.observe,
		s.securityHeaders,
		s.guard,
		csrf.NewCORS(cfg.CORS.AllowedOrigins).Wrap,
	)
	return s, nil
}

// key derives a store key in domain for this server's frontend: a login
// transaction, end-session handle or logout token of one frontend names
// nothing at another. Without frontends the domain is unchanged.
func (s *Server) key(domain string, v []byte) session.Key {
	if name := s.sessions.FrontendName(); name != "" {
		domain += "/" + name
	}
	return session.KeyOf(domain, v)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Handle serves a local API behind the session: requests need a live
// session (401 otherwise) and pass the same CSRF checks as proxied routes.
// The handler finds the user with UserFrom.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.boundBody(s.local(h)))
}

// HandlePublic serves h without a session or CSRF check: static files such
// as the SPA itself.
func (s *Server) HandlePublic(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.boundBody(h))
}

// handle registers h for path, answering other methods with a JSON 405.
func (s *Server) handle(path string, h http.Handler, methods ...string) {
	allow := ""
	for i, m := range methods {
		if i > 0 {
			allow += ", "
		}
		allow += m
	}
	s.mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m || (r.Method == http.MethodHead && m == http.MethodGet) {
				h.ServeHTTP(w, r)
				return
			}
		}
		e := httperr.New(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed", nil)
		e.Header = http.Header{"Allow": {allow}}
		httperr.Write(w, e)
	}))
}

// api adapts a handler that returns an error: the error becomes a JSON
// answer, and its detail goes to the log.
func api(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			noteError(r, err)
			httperr.Write(w, err)
		}
	})
}

func notFound() http.Handler {
	return api(func(w http.ResponseWriter, r *http.Request) error {
		return httperr.New(http.StatusNotFound, "not_found", "no such endpoint", nil)
	})
}

// proxied guards a proxied route (authorizeRoute): method and CSRF first
// (nothing reaches the upstream without passing them), then the session
// and its access token.
func (s *Server) proxied(rt *proxy.Route, h http.Handler) http.Handler {
	return api(func(w http.ResponseWriter, r *http.Request) error {
		info(r).route = rt.Name
		l, at, err := s.authorizeRoute(w, r, rt)
		if err != nil {
			return err
		}
		if l != nil && rt.WebSocket && proxy.IsUpgrade(r) {
			release, ok := s.sockets.acquire(l.Key, s.cfg.Server.WebSocketMaxPerSession)
			if !ok {
				return tooManySockets()
			}
			defer release() // the proxy returns once the socket has closed
		}
		if at != "" {
			key, err := s.boundKey(l, rt)
			if err != nil {
				return err
			}
			ctx := withToken(r.Context(), at, key)
			if l != nil && rt.WebSocket && proxy.IsUpgrade(r) {
				// A socket outlives the request that opened it: close it when
				// its session ends (logout, back-channel logout, revocation,
				// expiry), as the next request would have been refused.
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				go s.watchSession(ctx, cancel, l.Key)
			}
			if ctx != r.Context() {
				r = r.WithContext(ctx)
			}
		}
		h.ServeHTTP(w, r)
		return nil
	})
}

// watchSession cancels the socket's context once its session is gone. A
// store outage does not close it: that ends nobody's session.
func (s *Server) watchSession(ctx context.Context, cancel context.CancelFunc, key session.Key) {
	t := time.NewTicker(s.cfg.Server.WebSocketCheck.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.sessions.LoadKey(ctx, key); errors.Is(err, session.ErrNoSession) {
				s.log.Info("closing a WebSocket whose session ended", "session", key.Short())
				cancel()
				return
			}
		}
	}
}

// local guards a local API handler like a proxied route with a token.
func (s *Server) local(h http.Handler) http.Handler {
	return api(func(w http.ResponseWriter, r *http.Request) error {
		if err := s.checkCSRF(r, true); err != nil {
			return err
		}
		l, err := s.session(r)
		if err != nil {
			return err
		}
		h.ServeHTTP(w, r.WithContext(withUser(r.Context(), l)))
		return nil
	})
}

func (s *Server) checkCSRF(r *http.Request, always bool) error {
	if err := s.csrf.Check(r, always); err != nil {
		return httperr.New(http.StatusForbidden, "csrf", "request refused by the cross-site request forgery check", err)
	}
	return nil
}

// session loads the request's session, slides its idle timeout, and notes
// it for the access log. Errors are ready to write: 401 or 503.
func (s *Server) session(r *http.Request) (*session.Loaded, error) {
	ri := info(r)
	now := s.clock(ri)
	l, err := s.sessions.LoadAt(r.Context(), r, now)
	switch {
	case errors.Is(err, session.ErrNoSession):
		return nil, httperr.Unauthenticated(nil)
	case err != nil:
		return nil, httperr.Unavailable(err)
	}
	ri.session, ri.sub = l.Key, l.Subject
	if ok, wait := s.limits.session.AllowAt(string(l.Key), now); !ok {
		s.metrics.RateLimited("session")
		return nil, tooMany(wait)
	}
	s.sessions.TouchAt(r.Context(), l, now)
	return l, nil
}

// sessionToken loads the request's session and its access token, refreshed
// if due. A session that ended is a 401 with the cookie cleared; an outage
// is a 503.
func (s *Server) sessionToken(w http.ResponseWriter, r *http.Request) (*session.Loaded, string, error) {
	return s.sessionTokenFor(w, r, "")
}

// sessionTokenFor is sessionToken for a token restricted to resource (RFC
// 8707); "" is the session's own.
func (s *Server) sessionTokenFor(w http.ResponseWriter, r *http.Request, resource string) (*session.Loaded, string, error) {
	l, err := s.session(r)
	if err != nil {
		return nil, "", err
	}
	at, err := s.tokens.AccessTokenFor(r.Context(), l, resource)
	switch {
	case errors.Is(err, token.ErrSessionEnded):
		s.sessions.ClearCookie(w)
		return nil, "", httperr.Unauthenticated(err)
	case err != nil:
		return nil, "", httperr.Unavailable(err)
	}
	return l, at, nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	httperr.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// probeEvery bounds upstream probing: however often /readyz is asked
// (it is public and unlimited), each upstream is probed at most this often.
const probeEvery = 10 * time.Second

// upstreamHealth returns the last probe results, probing again when they
// are older than probeEvery.
func (s *Server) upstreamHealth(ctx context.Context) map[string]string {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if s.probed.IsZero() || time.Since(s.probed) >= probeEvery {
		s.probes, s.probed = s.probeUpstreams(ctx), time.Now()
	}
	return s.probes
}

// probeUpstreams GETs each route's health_path concurrently and reports
// "ok" or what failed.
func (s *Server) probeUpstreams(ctx context.Context) map[string]string {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]string{}
	for _, rc := range s.cfg.Routes {
		if rc.HealthPath == "" {
			continue
		}
		rt, _, _ := s.routes.Match(rc.Prefix)
		wg.Go(func() {
			status := "ok"
			u := *rt.Upstream
			u.Path, u.RawPath, u.RawQuery = rc.HealthPath, "", ""
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: rt.TLS}}
			defer client.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			resp, err := client.Do(req)
			switch {
			case err != nil:
				status = "unreachable"
			case resp.StatusCode >= 300:
				status = "answered " + resp.Status
			}
			if resp != nil {
				resp.Body.Close()
			}
			mu.Lock()
			out[rt.Name] = status
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// checkReady finds whether moat can serve logins and API calls: the IdP's
// discovery document is loaded and the session store answers. Upstreams
// with a health_path are probed and reported alongside. readyz caches it.
func (s *Server) checkReady(ctx context.Context) *readiness {
	var noted error
	checks := map[string]string{"idp": "ok", "store": "ok"}
	ready := true
	if meta, err := s.idp.Discover(ctx); err != nil {
		checks["idp"], ready = "discovery failed", false
		if errors.Is(err, oidc.ErrIssuerMismatch) {
			checks["idp"] = err.Error()
		}
		noted = err
	} else if m := s.idp.Mismatches(meta); len(m) > 0 {
		// Every login would fail: not ready, and say why.
		checks["idp"], ready = strings.Join(m, "; "), false
		noted = errors.New(checks["idp"])
	}
	if err := s.sessions.Store().Ping(ctx); err != nil {
		checks["store"], ready = "unreachable", false
		noted = err
	} else if err := s.sessions.VerifyKeys(ctx); err != nil {
		checks["store"], ready = "session keys not checked against the store", false
		if errors.Is(err, session.ErrWrongKeys) {
			checks["store"] = "no configured session key opens the store's sessions"
		}
		noted = err
	}
	if rej, ok := s.idp.ClientRejected(); ok {
		// Reported, not gating: taking every replica out of the load
		// balancer would not fix the client registration, and no token call
		// could then show that it was fixed.
		checks["idp_client"] = "refused by the identity provider (" + rej.Code + ") at " + rej.At.UTC().Format(time.RFC3339)
	} else {
		checks["idp_client"] = "ok"
	}
	for name, status := range s.upstreamHealth(ctx) {
		checks["upstream "+name] = status // reported, not gating: see routes[].health_path
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return &readiness{status: status,
		detailed: map[string]any{"ready": ready, "checks": checks}, err: noted}
}

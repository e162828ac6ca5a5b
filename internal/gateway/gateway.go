// Package gateway assembles moat from its configuration: codec, store, IdP
// client, token manager, route table and HTTP server. The public moat
// package and the moat command both build on it.
package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-bff/moat/internal/admin"
	"github.com/moat-bff/moat/internal/clientauth"
	"github.com/moat-bff/moat/internal/clienttoken"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/exchange"
	"github.com/moat-bff/moat/internal/forwardauth"
	"github.com/moat-bff/moat/internal/frontend"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/metrics"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/pending"
	"github.com/moat-bff/moat/internal/policy"
	"github.com/moat-bff/moat/internal/proxy"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/server"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/spa"
	"github.com/moat-bff/moat/internal/telemetry"
	"github.com/moat-bff/moat/internal/token"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace/noop"
)

// Gateway is moat as an http.Handler. Its configuration can be reloaded
// while it serves (Reload); the parts that hold state (sessions, tokens,
// the IdP client, metrics) live as long as the Gateway.
type Gateway struct {
	Sessions *session.Manager
	// Tokens, IdP and Revoker are the first frontend's (the only one
	// without frontends in the configuration); Frontends lists them all.
	Tokens  *token.Manager
	IdP     *oidc.Client
	Revoker *revoke.Queue
	Admin   *admin.Handler // nil unless admin.listen is set
	// ForwardAuth serves forward_auth.listen; nil unless it is set. It
	// must never be served on the main listener.
	ForwardAuth http.Handler
	Metrics     *metrics.Metrics

	log     *slog.Logger
	pending *pending.Cap // kept across reloads: it counts logins in flight
	tracing *telemetry.Tracing
	store   session.Store
	// stopWatch ends the session cache's invalidation watch.
	stopWatch context.CancelFunc
	handler   http.Handler // tracing around whatever current holds
	current   atomic.Pointer[served]
	mu        sync.Mutex // serializes Reload and registrations
	handlers  []registration
	sockets   *server.Sockets // open WebSockets per session, across reloads
	fa        *forwardauth.Handler
	apps      []*app // by frontend, kept across reloads
}

// app is one frontend's stateful part, kept across reloads: its OIDC
// client and everything that talks to it.
type app struct {
	sessions  *session.Manager // the frontend's view (session.Manager.Frontend)
	idp       *oidc.Client
	tokens    *token.Manager
	revoker   *revoke.Queue
	clients   *clienttoken.Cache // client-credentials tokens
	exchanges *exchange.Cache    // RFC 8693 exchanged tokens
	// clientJWKS is the public JWK set of the client keys (private_key_jwt,
	// request objects); nil when there are none.
	clientJWKS []byte
}

// Frontend is one frontend as the moat command sees it.
type Frontend struct {
	Config *config.Config // its view (config.Config.Views)
	IdP    *oidc.Client
}

// served is the part a reload replaces.
type served struct {
	cfg     *config.Config
	srvs    []*server.Server   // by frontend
	mounted []http.Handler     // srvs below the path of their public_url
	routes  []*proxy.Table     // by frontend
	sel     *frontend.Selector // nil with one frontend
	authz   http.Handler       // the forward-auth decision, by frontend; nil when off
}

// ServeHTTP hands r to its frontend's server, without the path prefix the
// frontend is mounted at. A request for a host no frontend serves gets 421
// (RFC 9110 §15.5.20), except the health checks, which a load balancer or
// kubelet sends to an address, not a frontend's host: the first frontend
// answers them, and its /readyz then covers every frontend, as does the
// admin listener's.
func (s *served) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i, refusal := s.pick(r)
	switch {
	case s.sel != nil && r.URL.Path == "/readyz" && (refusal != nil || server.IsDetailed(r)):
		s.srvs[0].ServeHTTP(w, server.WithReadiness(r, s.readiness))
	case refusal != nil && r.URL.Path == "/healthz":
		s.srvs[0].ServeHTTP(w, r)
	case refusal != nil:
		refusal.ServeHTTP(w, r)
	default:
		s.mounted[i].ServeHTTP(w, r)
	}
}

// readiness is every frontend's: ready when all are, each one's checks
// under its name. A replica that cannot log users in at one frontend is
// not ready, as it would not be with that frontend alone.
func (s *served) readiness(ctx context.Context) (bool, map[string]any, error) {
	type result struct {
		ok     bool
		checks map[string]any
		err    error
	}
	results := make([]result, len(s.srvs))
	var wg sync.WaitGroup
	for i, srv := range s.srvs {
		wg.Go(func() {
			ok, checks, err := srv.Readiness(ctx)
			results[i] = result{ok, checks, err}
		})
	}
	wg.Wait()
	all, per, errs := true, make(map[string]any, len(results)), []error(nil)
	for i, res := range results {
		name := s.cfg.Frontends[i].Name
		all = all && res.ok
		per[name] = res.checks
		if res.err != nil {
			errs = append(errs, fmt.Errorf("frontend %s: %w", name, res.err))
		}
	}
	return all, map[string]any{"ready": all, "frontends": per}, errors.Join(errs...)
}

// pick returns the index of r's frontend, by its Host and then by the
// longest path prefix, or the refusal for a request no frontend takes.
func (s *served) pick(r *http.Request) (int, http.Handler) {
	if s.sel == nil {
		return 0, nil
	}
	if s.sel.Prefixed() && !frontend.Canonical(r.URL.Path) {
		// Browsers resolve dot segments before they send (RFC 3986
		// §5.2.4); a prefix means nothing in a path a server would clean
		// into another frontend's.
		return 0, refuse(http.StatusBadRequest, "bad_path", "the path has empty or dot segments; send it resolved, as browsers do")
	}
	m, ok := s.sel.Select(r.Host, r.URL.Path)
	switch {
	case !ok && s.sel.Serves(r.Host):
		return 0, refuse(http.StatusNotFound, "not_found", "no frontend is mounted at this path; use the path of a frontend's public_url")
	case !ok:
		return 0, refuse(http.StatusMisdirectedRequest, "unknown_host", "no frontend is served at this host; use the host of a frontend's public_url")
	case m.Prefix == "":
		return m.Index, nil
	case r.URL.Path == m.Prefix:
		// The SPA's relative URLs resolve against the directory.
		target := m.Prefix + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		return 0, http.RedirectHandler(target, http.StatusPermanentRedirect)
	case r.URL.RawPath != "" && !strings.HasPrefix(r.URL.RawPath, m.Prefix):
		// http.StripPrefix would answer a bare 404.
		return 0, refuse(http.StatusBadRequest, "bad_path", "the path escapes characters of the frontend's prefix; send the prefix as its public_url spells it")
	}
	return m.Index, nil
}

// below serves h at prefix, which h does not see (frontend.Match.Prefix).
func below(prefix string, h http.Handler) http.Handler {
	if prefix == "" {
		return h
	}
	return http.StripPrefix(prefix, h)
}

func refuse(status int, code, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httperr.Write(w, httperr.New(status, code, msg, nil))
	})
}

type registration struct {
	pattern string
	h       http.Handler
	public  bool
}

// Options are what tests and embedders may inject; zero values are the
// production choices.
type Options struct {
	// Now is the session clock (idle and absolute timeouts, token expiry).
	Now func() time.Time
	// Store replaces the store named by session.store.
	Store session.Store
	// Tracing exports spans; none when nil.
	Tracing *telemetry.Tracing
}

// New builds a Gateway from a validated configuration. It does not need the
// IdP to be up: discovery is retried until it succeeds, and /readyz says so.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, o Options) (*Gateway, error) {
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}
	if o.Tracing == nil {
		o.Tracing = telemetry.NewTracing(noop.NewTracerProvider())
	}
	m := metrics.New()
	if len(cfg.Frontends) > 0 {
		m = metrics.NewFrontends()
	}
	codec, err := newCodec(cfg)
	if err != nil {
		return nil, err
	}
	store := o.Store
	if store == nil {
		if store, err = backend.Open(ctx, cfg.Session.Store, log); err != nil {
			return nil, err
		}
	}
	if c, ok := store.(interface{ Len() int }); ok {
		m.ActiveSessions(c.Len)
	}
	inv, _ := store.(session.Invalidator) // before the wrapper hides it
	store = telemetry.Store(store, m, o.Tracing)
	keysPending, err := checkKeys(ctx, cfg, store, codec, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	// A store that pushes invalidations (Redis, PostgreSQL) makes the
	// session cache coherent across replicas; the watch ends with Close.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	sessions := session.NewManager(session.ManagerOptions{
		Store: store, Codec: codec, Logger: log, Now: o.Now,
		IdleTimeout: cfg.Session.IdleTimeout.D(), AbsoluteTimeout: cfg.Session.AbsoluteTimeout.D(),
		CacheTTL: cfg.Session.CacheTTL.D(), CacheSize: cfg.Session.CacheSize, KeysPending: keysPending,
		WatchContext: watchCtx, Invalidator: inv,
	})
	g := &Gateway{sockets: server.NewSockets(), Sessions: sessions, Metrics: m, log: log, tracing: o.Tracing, store: store, stopWatch: stopWatch}
	views := cfg.Views()
	for i, v := range views {
		a, err := g.newApp(v, o)
		if err != nil {
			for _, a := range g.apps {
				a.revoker.Stop()
			}
			stopWatch()
			store.Close()
			if len(cfg.Frontends) > 0 {
				err = fmt.Errorf("frontends[%d].%w", i, err)
			}
			return nil, err
		}
		g.apps = append(g.apps, a)
	}
	g.IdP, g.Tokens, g.Revoker = g.apps[0].idp, g.apps[0].tokens, g.apps[0].revoker
	g.pending = newPending(cfg, sessions, m)
	if cfg.ForwardAuth.Listen != "" {
		g.fa = forwardauth.New(cfg.ForwardAuth, log)
		g.fa.SetNext(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.current.Load().authz.ServeHTTP(w, r)
		}))
		g.ForwardAuth = o.Tracing.Handler(g.fa)
	}
	cur, err := g.build(cfg)
	if err != nil {
		g.Close()
		return nil, err
	}
	g.current.Store(cur)
	g.handler = o.Tracing.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.current.Load().ServeHTTP(w, r)
	}))
	if cfg.Admin.Listen != "" {
		fes := make([]admin.Frontend, len(g.apps))
		for i, a := range g.apps {
			fes[i] = admin.Frontend{Sessions: a.sessions, Revoker: a.revoker}
		}
		g.Admin = admin.New(fes, cfg.Admin.Token, log)
		g.Admin.Mux().Handle("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}))
		g.Admin.Mux().Handle("GET /healthz", g)
		g.Admin.Mux().Handle("GET /readyz", server.Detailed(g))
	}
	// Try discovery now so a misconfigured issuer shows in the first log
	// lines; failure is not fatal.
	for i, a := range g.apps {
		dctx, cancel := context.WithTimeout(ctx, views[i].OIDC.Timeout.D())
		_, err := a.idp.Discover(dctx)
		cancel()
		if errors.Is(err, oidc.ErrIssuerMismatch) {
			log.Error("oidc.issuer does not match the IdP's discovery document; no login can succeed", "error", err, frontendAttr(views[i]))
		} else if err != nil {
			log.Warn("identity provider not reachable yet; retrying on demand", "error", err, frontendAttr(views[i]))
		}
	}
	return g, nil
}

// frontendAttr names a view's frontend in a log line; nothing without
// frontends.
func frontendAttr(v *config.Config) slog.Attr {
	if v.Name == "" {
		return slog.Attr{}
	}
	return slog.String("frontend", v.Name)
}

// newApp builds the stateful part of the frontend v (a view).
func (g *Gateway) newApp(v *config.Config, o Options) (*app, error) {
	m := g.Metrics.Frontend(v.Name)
	var idp *oidc.Client
	clientKeys, err := loadClientKeys(v)
	if err != nil {
		return nil, err
	}
	idpClient, err := idpHTTPClient(v, func(rt http.RoundTripper) http.RoundTripper {
		rt = telemetry.IdPTransport(rt, m, o.Tracing, func(r *http.Request) string { return idp.EndpointName(r.URL) })
		if v.OIDC.ClientAuthMethod == config.AuthPrivateKeyJWT {
			rt = &clientauth.Transport{Base: rt, Keys: clientKeys, ClientID: v.OIDC.ClientID, Audience: assertionAudience(v), Now: o.Now}
		}
		return rt
	})
	if err != nil {
		return nil, err
	}
	var requestObjects oidc.RequestObjectSigner
	if v.OIDC.RequestObject {
		requestObjects = clientKeys
	}
	idp = oidc.New(oidc.Config{
		Issuer: v.OIDC.Issuer, ClientID: v.OIDC.ClientID, ClientSecret: v.OIDC.ClientSecret,
		AuthMethod: v.OIDC.ClientAuthMethod, Scopes: v.OIDC.Scopes,
		RedirectURL:      v.RedirectURI(),
		TrustedAudiences: v.OIDC.TrustedAudiences,
		MaxIDTokenAge:    v.OIDC.MaxIDTokenAge.D(), ClockSkew: v.OIDC.ClockSkew.D(),
		HTTPClient: idpClient, PAR: v.OIDC.PAR, OnClientRejected: m.ClientRejected,
		AuthParams: v.OIDC.AuthParams, Resources: routeResources(v), RequestObjects: requestObjects,
		Profile: v.OIDC.Profile, CertificateBound: v.OIDC.ClientCertFile != "", DPoP: v.OIDC.DPoP,
		LegacyLogoutTokens: v.OIDC.InsecureLegacyLogoutTokens,
	}, g.log)
	sessions := g.Sessions.Frontend(v.Name)
	a := &app{sessions: sessions, idp: idp,
		tokens: token.NewManager(token.Options{
			Sessions: sessions, Refresher: idp, Skew: v.OIDC.RefreshSkew.D(),
			LeaseTTL: v.OIDC.Timeout.D() + 5*time.Second, Logger: g.log, OnRefresh: m.Refresh,
		}),
		revoker:   revoke.Start(idp, g.log, revoke.Options{}),
		clients:   clienttoken.New(idp, v.OIDC.RefreshSkew.D(), o.Now),
		exchanges: exchange.New(exchange.Options{Source: idp, Skew: v.OIDC.RefreshSkew.D(), Now: o.Now}),
	}
	if clientKeys != nil {
		a.clientJWKS, _ = json.Marshal(clientKeys.Public()) // public keys always marshal
	}
	return a, nil
}

// Frontends lists the frontends served: one without frontends in the
// configuration.
func (g *Gateway) Frontends() []Frontend {
	views := g.Config().Views()
	out := make([]Frontend, len(views))
	for i, v := range views {
		out[i] = Frontend{Config: v, IdP: g.apps[i].idp}
	}
	return out
}

// build makes the reloadable part from cfg: for each frontend, the route
// table and the HTTP server with its CSRF, CORS and rate-limit settings,
// plus every handler registered so far; and the selector between them.
func (g *Gateway) build(cfg *config.Config) (*served, error) {
	cur := &served{cfg: cfg}
	views := cfg.Views()
	var urls, prefixes []string
	for i, v := range views {
		srv, table, err := g.buildFrontend(v, g.apps[i])
		if err != nil {
			if len(cfg.Frontends) > 0 {
				err = fmt.Errorf("frontends[%d].%w", i, err)
			}
			return nil, err
		}
		cur.srvs, cur.routes = append(cur.srvs, srv), append(cur.routes, table)
		urls = append(urls, v.PublicURL)
		prefix, _ := frontend.Prefix(config.MustURL(v.PublicURL)) // validated
		prefixes = append(prefixes, prefix)
		cur.mounted = append(cur.mounted, below(prefix, srv))
	}
	if len(cfg.Frontends) > 0 {
		sel, err := frontend.New(urls)
		if err != nil {
			return nil, err
		}
		cur.sel = sel
	}
	if g.fa != nil {
		// The original request's Host (X-Forwarded-Host from the gateway)
		// picks the frontend that decides.
		authz := make([]http.Handler, len(cur.srvs))
		for i, srv := range cur.srvs {
			authz[i] = below(prefixes[i], srv.Authorizer(g.fa.Allow))
		}
		cur.authz = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i, refusal := cur.pick(r)
			if refusal != nil {
				refusal.ServeHTTP(w, r)
				return
			}
			authz[i].ServeHTTP(w, r)
		})
	}
	return cur, nil
}

// buildFrontend makes one frontend's route table and server from its view.
func (g *Gateway) buildFrontend(cfg *config.Config, a *app) (*server.Server, *proxy.Table, error) {
	var routes []proxy.Route
	for i, r := range cfg.Routes {
		tlsCfg, err := upstreamTLS(r)
		if err != nil {
			return nil, nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		rules := make([]policy.Rule, len(r.Require))
		for j, q := range r.Require {
			rules[j] = q.Rule()
		}
		require, err := policy.New(rules, strings.TrimSuffix(cfg.PublicURL, "/")+"/auth/login")
		if err != nil {
			return nil, nil, fmt.Errorf("routes[%d].require: %w", i, err)
		}
		var xchg *proxy.Exchange
		if x := r.TokenExchange; x != nil {
			xchg = &proxy.Exchange{Audience: x.Audience, Resource: x.Resource, Scope: x.Scope}
		}
		routes = append(routes, proxy.Route{
			Require: require, Exchange: xchg,
			Name: r.Name, Prefix: r.Prefix, Upstream: config.MustURL(r.Upstream),
			Token:     r.Token == config.TokenUser || r.Token == config.TokenClient || r.Token == config.TokenUserOrClient,
			TokenType: r.Token, ClientScopes: r.ClientScopes, Resource: r.Resource, Timeout: r.Timeout.D(), TLS: tlsCfg,
			Methods: r.Methods, MaxBodyBytes: r.MaxBodyBytes, AllowSetCookie: r.InsecureAllowSetCookie, WebSocket: r.WebSocket,
			ForwardHeaders: r.ForwardHeaders, AllowClearSiteData: r.InsecureAllowClearSiteData,
		})
	}
	m := g.Metrics.Frontend(cfg.Name)
	table := proxy.New(routes, proxy.Options{
		Logger:        g.log,
		WrapTransport: g.tracing.Transport,
		OnUpstream: func(r *http.Request, route string, code int, d time.Duration) {
			m.Upstream(route, code, d)
			server.NoteUpstream(r, code)
		},
	})
	srv, err := server.New(server.Deps{Config: cfg, Logger: g.log, Sessions: a.sessions, Tokens: a.tokens, IdP: a.idp,
		Routes: table, Revoker: a.revoker, Metrics: m, ClientTokens: a.clients, Exchanges: a.exchanges, Pending: g.pending, ClientJWKS: a.clientJWKS, Sockets: g.sockets})
	if err != nil {
		return nil, nil, err
	}
	if cfg.SPA.Dir != "" {
		srv.HandlePublic("/", spa.Handler(os.DirFS(cfg.SPA.Dir), cfg.SPA.CSP))
	}
	if cfg.Server.InsecureExposeMetrics {
		srv.HandlePublic("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}))
	}
	for _, reg := range g.handlers {
		if reg.public {
			srv.HandlePublic(reg.pattern, reg.h)
		} else {
			srv.Handle(reg.pattern, reg.h)
		}
	}
	return srv, table, nil
}

// ServeHTTP serves the main listener, with a trace span per request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// Handle serves a local API behind the session; see server.Server.Handle.
// It survives reloads.
func (g *Gateway) Handle(pattern string, h http.Handler) { g.register(registration{pattern, h, false}) }

// HandlePublic serves h with no session or CSRF check; it survives reloads.
func (g *Gateway) HandlePublic(pattern string, h http.Handler) {
	g.register(registration{pattern, h, true})
}

func (g *Gateway) register(reg registration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handlers = append(g.handlers, reg)
	for _, srv := range g.current.Load().srvs {
		if reg.public {
			srv.HandlePublic(reg.pattern, reg.h)
		} else {
			srv.Handle(reg.pattern, reg.h)
		}
	}
}

// Routes returns the current route table of the first frontend.
func (g *Gateway) Routes() *proxy.Table { return g.current.Load().routes[0] }

// Config returns the configuration in force.
func (g *Gateway) Config() *config.Config { return g.current.Load().cfg }

// Reload switches to cfg (already validated) without dropping a request:
// routes, CORS origins, CSRF mode, rate limits, the SPA and the session key
// ring may change; anything else needs a restart and makes Reload fail,
// keeping the old configuration. New session keys must open what the store
// holds (session.CheckKeys). Requests in flight finish on the old routes.
func (g *Gateway) Reload(ctx context.Context, cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.current.Load()
	if keys := restartOnly(old.cfg, cfg); len(keys) > 0 {
		return fmt.Errorf("%s cannot change without a restart (SIGHUP reloads only %s); keeping the old configuration",
			strings.Join(keys, ", "), strings.Join(reloadable, ", "))
	}
	codec, err := newCodec(cfg)
	if err != nil {
		return err
	}
	keysPending, err := checkKeys(ctx, cfg, g.store, codec, g.log)
	if err != nil {
		return err
	}
	next, err := g.build(cfg)
	if err != nil {
		return err
	}
	g.Sessions.SetCodec(codec, keysPending)
	g.current.Store(next)
	old.closeIdle()
	g.log.Info("configuration reloaded", "frontends", len(cfg.Views()))
	return nil
}

// reloadable are the keys (and everything below them) that a reload may
// change; anything else needs a restart.
var reloadable = []string{"routes", "cors", "csrf", "rate_limit", "spa", "session.keys", "session.keys_file", "log.level"}

// keptAcrossReload are keys below reloadable ones that configure what a
// reload keeps (the pending-logins cap counts logins in flight), so they
// need a restart: a reload must refuse them, not accept and ignore them.
var keptAcrossReload = []string{"rate_limit.pending_logins"}

// restartOnly lists the exact key paths that differ between a and b
// outside the reloadable ones (session.idle_timeout, not session).
func restartOnly(a, b *config.Config) []string {
	var keys []string
	for _, k := range config.Diff(a, b) {
		// A frontend's keys reload as the same keys at the top level do.
		in := k
		if rest, ok := strings.CutPrefix(k, "frontends["); ok {
			if _, key, ok := strings.Cut(rest, "]."); ok {
				in = key
			}
		}
		below := func(r string) bool { return in == r || strings.HasPrefix(in, r+".") || strings.HasPrefix(in, r+"[") }
		if slices.ContainsFunc(keptAcrossReload, below) || !slices.ContainsFunc(reloadable, below) {
			keys = append(keys, k)
		}
	}
	return keys
}

// checkKeys refuses to start when no configured key opens the sessions a
// persistent store already holds (see session.CheckKeys). When the store
// cannot be reached it reports the check pending: the session manager does
// it once the store answers (session.Manager.VerifyKeys).
func checkKeys(ctx context.Context, cfg *config.Config, store session.Store, codec *session.Codec, log *slog.Logger) (pending bool, err error) {
	if cfg.Session.Store == "memory" {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = session.CheckKeys(ctx, store, codec)
	switch {
	case errors.Is(err, session.ErrWrongKeys):
		return false, fmt.Errorf("session.keys: none of the configured keys opens the sessions in %s (sealed at a login less than session.absolute_timeout + 2m ago); "+
			"starting would log those users out. Configure the key in use (rotate by adding a new key second, then moving it first, then removing the old one). "+
			"If no session there needs keeping (a test run with a throwaway key, say), run `moat reset-key-check --config FILE`, or wait until they have expired", backend.Redact(cfg.Session.Store))
	case err != nil:
		log.Warn("session store not reachable at startup; moat starts, reports not ready, and checks the session keys once it is", "error", err)
		return true, nil
	}
	return false, nil
}

func (s *served) closeIdle() {
	for _, t := range s.routes {
		t.CloseIdleConnections()
	}
}

// Close stops background work and releases the session store and idle
// upstream connections.
func (g *Gateway) Close() error {
	for _, a := range g.apps {
		a.revoker.Stop()
	}
	g.stopWatch()
	if cur := g.current.Load(); cur != nil {
		cur.closeIdle()
	}
	return g.store.Close()
}

func newCodec(cfg *config.Config) (*session.Codec, error) {
	var keys [][]byte
	for i, k := range cfg.Session.Keys {
		b, err := session.ParseKey(k.Reveal())
		if err != nil {
			return nil, fmt.Errorf("session.keys[%d]: %w", i, err)
		}
		keys = append(keys, b)
	}
	if len(keys) == 0 {
		if !cfg.IsLoopback() {
			return nil, errors.New("session.keys: is required off loopback")
		}
		k, _ := session.ParseKey(session.NewKey())
		keys = append(keys, k)
	}
	return session.NewCodec(keys...)
}

// upstreamTLS builds a route's TLS client configuration: system roots plus
// ca_file, and a client certificate for mTLS when configured.
func upstreamTLS(r config.Route) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.CAFile != "" {
		pool, err := config.LoadCertPool(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		c.RootCAs = pool
	}
	if r.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.ClientCertFile, r.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client_cert_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// NewHTTPServer returns an http.Server for h with every timeout and size
// limit from cfg.Server set, so slow or oversized clients cannot hold
// connections or memory. It has no WriteTimeout, which would end every
// response, streams included, a fixed time after its request: the server
// package bounds each write instead (server.write_timeout).
//
// With server.tls_cert_file it serves HTTPS with HTTP/2 (call ServeTLS with
// empty file names); with server.h2c it also speaks HTTP/2 in clear.
func NewHTTPServer(cfg *config.Config, h http.Handler, log *slog.Logger) (*http.Server, error) {
	srv := NewInternalHTTPServer(cfg, h, log)
	if cfg.Server.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCertFile, cfg.Server.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("server.tls_cert_file: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		srv.Protocols.SetHTTP2(true)
	}
	if cfg.Server.H2C {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	return srv, nil
}

// NewInternalHTTPServer is NewHTTPServer for the listeners beside moat's
// own (admin.listen, forward_auth.listen): the same timeouts and limits,
// plain HTTP/1.1, so it cannot fail.
func NewInternalHTTPServer(cfg *config.Config, h http.Handler, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Server.ReadTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateIdle {
				// The last response's write bound (server.write_timeout)
				// must not cut off the next answer on this connection.
				c.SetWriteDeadline(time.Time{})
			}
		},
	}
	srv.Protocols.SetHTTP1(true)
	return srv
}

// maxIdPResponse bounds what moat reads from the IdP (discovery, JWKS,
// tokens, UserInfo), so a broken or hostile IdP cannot exhaust memory.
const maxIdPResponse = 1 << 20

// idpHTTPClient is the client for every IdP call: bounded in time and size,
// TLS roots from the system (SSL_CERT_FILE works) plus oidc.ca_file, and no
// redirects (a token request must not be replayed elsewhere).
// routeResources lists the distinct routes[].resource values, for the
// authorization request (RFC 8707 §2.1).
func routeResources(cfg *config.Config) []string {
	var out []string
	for _, r := range cfg.Routes {
		if r.Resource != "" && !slices.Contains(out, r.Resource) {
			out = append(out, r.Resource)
		}
	}
	return out
}

// loadClientKeys returns the keys for private_key_jwt and request
// objects, or nil when neither is used.
func loadClientKeys(cfg *config.Config) (*clientauth.Keys, error) {
	if cfg.OIDC.ClientAuthMethod != config.AuthPrivateKeyJWT && !cfg.OIDC.RequestObject {
		return nil, nil
	}
	keys, err := clientauth.Load(cfg.OIDC.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("oidc.client_key_file: %w", err)
	}
	return keys, nil
}

func assertionAudience(cfg *config.Config) string {
	if cfg.OIDC.ClientAssertionAudience == config.AssertionAudEndpoint {
		return "" // clientauth.Transport: the request's URL
	}
	return cfg.OIDC.Issuer
}

func idpHTTPClient(cfg *config.Config, wrap func(http.RoundTripper) http.RoundTripper) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.OIDC.CAFile != "" {
		pool, err := config.LoadCertPool(cfg.OIDC.CAFile)
		if err != nil {
			return nil, fmt.Errorf("oidc.ca_file: %w", err)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.OIDC.ClientCertFile != "" {
		// RFC 8705 §2: the certificate is moat's client authentication
		// (or, with private_key_jwt, binds the tokens: §3); it is offered
		// only to servers that ask for one.
		pair, err := tls.LoadX509KeyPair(cfg.OIDC.ClientCertFile, cfg.OIDC.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("oidc.client_cert_file: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment, DialContext: d.DialContext, TLSClientConfig: tlsCfg,
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: cfg.OIDC.Timeout.D(),
	}
	return &http.Client{
		Transport:     wrap(limitBody{tr}),
		Timeout:       cfg.OIDC.Timeout.D(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

type limitBody struct{ http.RoundTripper }

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.RoundTripper.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{r: io.LimitReader(resp.Body, maxIdPResponse+1), c: resp.Body}
	return resp, nil
}

type limitedBody struct {
	r io.Reader
	c io.Closer
	n int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > maxIdPResponse {
		return n, errors.New("identity provider response exceeds 1 MiB")
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.c.Close() }

// Check reaches each frontend's IdP discovery document and the session
// store, and returns every problem, each naming its configuration key.
func (g *Gateway) Check(ctx context.Context) error {
	var errs []error
	for i, fe := range g.Frontends() {
		key := ""
		if fe.Config.Name != "" {
			key = fmt.Sprintf("frontends[%d].", i)
		}
		if meta, err := fe.IdP.Discover(ctx); errors.Is(err, oidc.ErrIssuerMismatch) {
			errs = append(errs, fmt.Errorf("%soidc.issuer: %w", key, err))
		} else if err != nil {
			errs = append(errs, fmt.Errorf("%soidc.issuer: discovery failed (check the URL and that the IdP is reachable): %w", key, err))
		} else {
			for _, m := range fe.IdP.Mismatches(meta) {
				errs = append(errs, errors.New(key+m))
			}
		}
	}
	if err := g.store.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("session.store: not reachable: %w", err))
	}
	return errors.Join(errs...)
}

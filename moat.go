// Package moat is a Backend-for-Frontend for browser single-page apps
// (draft-ietf-oauth-browser-based-apps §6.1): a confidential OpenID Connect
// client that keeps every token on the server, gives the browser only an
// opaque HttpOnly session cookie, and forwards API calls with the access
// token.
//
// Most deployments run the moat binary. Go backends can embed it instead:
//
//	cfg, err := moat.LoadConfig("moat.yaml")
//	gw, err := moat.New(ctx, cfg, logger)
//	defer gw.Close()
//	gw.Handle("GET /api/orders", ordersHandler) // behind the session and CSRF checks
//	http.ListenAndServe(cfg.Listen, gw)
//
// and find the user in their handlers with moat.User(r.Context()).
package moat

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/policy"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/server"
)

// Config is moat's configuration; see the README for every key. Build one
// from YAML with LoadConfig, or in Go with the types below, then call its
// SetDefaults and Validate methods before New.
type Config = config.Config

// The parts of a Config, so Go code outside this module can build one.
type (
	OIDCConfig    = config.OIDC
	SessionConfig = config.Session
	Route         = config.Route
	CORSConfig    = config.CORS
	CSRFConfig    = config.CSRF
	LogConfig     = config.Log
	AdminConfig   = config.Admin
	// ForwardAuthConfig is forward_auth: docs/gateways.md.
	ForwardAuthConfig = config.ForwardAuth
	ServerConfig      = config.Server
	RateLimits        = config.Limits
	RateLimit         = config.Limit
	SPAConfig         = config.SPA
	// FrontendConfig is one of Config.Frontends: several SPAs on one moat
	// (docs/authorization.md, "Many frontends").
	FrontendConfig = config.Frontend
	// Requirement is one condition on the user's claims, for Route.Require
	// and Gateway.Require (docs/authorization.md).
	Requirement = config.Requirement
	// Duration is a time.Duration written "90s", "15m" or "12h" in YAML.
	Duration = config.Duration
	// Secret is a string that prints as REDACTED everywhere.
	Secret = secret.String
)

// Identity is the logged-in user as a local handler sees it.
type Identity = server.Identity

// LoadConfig reads and validates a YAML configuration file, taking secrets
// from MOAT_OIDC_CLIENT_SECRET and MOAT_SESSION_KEYS when set.
func LoadConfig(path string) (*Config, error) {
	return config.Load(path, os.LookupEnv)
}

// User returns the logged-in user of a request served by a handler
// registered with Gateway.Handle.
func User(ctx context.Context) (*Identity, bool) { return server.UserFrom(ctx) }

// Gateway is moat as an http.Handler. Register local APIs with Handle
// (behind the session and CSRF checks) and static files with HandlePublic.
type Gateway struct {
	g         *gateway.Gateway
	publicURL string
}

// New builds a Gateway from a configuration with defaults set; it validates
// it first and returns every problem. It does not need the
// IdP to be up: discovery is retried until it succeeds, and /readyz says so.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g, err := gateway.New(ctx, cfg, log, gateway.Options{})
	if err != nil {
		return nil, err
	}
	return &Gateway{g, cfg.Views()[0].PublicURL}, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.g.ServeHTTP(w, r) }

// Handle serves a local API at pattern (http.ServeMux syntax) behind the
// session: requests without one get a 401 JSON answer, and requests that
// fail the CSRF check a 403, before h runs. h finds the user with User.
func (g *Gateway) Handle(pattern string, h http.Handler) { g.g.Handle(pattern, h) }

// Require wraps h, a handler for Handle, so that it runs only for users
// who meet every rule, as routes[].require does for proxied routes: 403
// forbidden when the user lacks a right, 401 step_up_required with the
// login URL when a stronger or fresher login can meet the rules. A
// malformed rule is an error.
func (g *Gateway) Require(h http.Handler, rules ...Requirement) (http.Handler, error) {
	prs := make([]policy.Rule, len(rules))
	for i, q := range rules {
		prs[i] = q.Rule()
	}
	p, err := policy.New(prs, strings.TrimSuffix(g.publicURL, "/")+"/auth/login")
	if err != nil {
		return nil, err
	}
	return server.Require(p, h), nil
}

// HandlePublic serves h at pattern with no session or CSRF check, for static
// files such as the SPA itself.
func (g *Gateway) HandlePublic(pattern string, h http.Handler) { g.g.HandlePublic(pattern, h) }

// Check reaches the IdP and the session store and returns every problem.
func (g *Gateway) Check(ctx context.Context) error { return g.g.Check(ctx) }

// AdminHandler returns the admin API (session listing and revocation), to
// be served on a separate, non-public listener; nil unless admin.listen is
// configured.
func (g *Gateway) AdminHandler() http.Handler {
	if g.g.Admin == nil {
		return nil
	}
	return g.g.Admin
}

// ForwardAuthHandler returns the forward-auth check for gateways (nginx
// auth_request, Traefik forwardAuth, Caddy forward_auth, Envoy ext_authz;
// docs/gateways.md), to be served on its own listener that only the
// gateways reach, never on the browser one: its answers carry access
// tokens. nil unless forward_auth.listen is configured.
func (g *Gateway) ForwardAuthHandler() http.Handler { return g.g.ForwardAuth }

// Close releases the session store and idle upstream connections.
func (g *Gateway) Close() error { return g.g.Close() }

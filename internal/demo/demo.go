// Package demo is `moat demo`: the whole Backend-for-Frontend system on one
// machine, in one process. A development OpenID Provider, a resource API
// that checks access tokens, and moat serving a small SPA, wired together
// with a configuration built in Go.
//
//	browser ──cookie──▶ moat (BFF) ──Bearer──▶ recipe API
//	                      │
//	                      └── code+PKCE, refresh, revoke ──▶ demo IdP
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-bff/moat"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/demo/api"
	"github.com/moat-bff/moat/internal/demo/idp"
	"github.com/moat-bff/moat/internal/demo/spa"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

// ClientID is the BFF's client ID at the demo IdP, and the audience of its
// access tokens.
const ClientID = "moat-demo"

// Options configures the demo. A port of 0 takes any free port.
type Options struct {
	BFFPort   int
	IdPPort   int
	APIPort   int
	AdminPort int // moat's admin listener: /metrics and the session admin API
	// FrontendOrigin is the origin of an SPA served elsewhere (a Vite dev
	// server): it becomes frontend_url and is allowed by CORS, and its host
	// becomes the demo's Host unless Host is set.
	FrontendOrigin string
	// Host is the host of every URL the demo publishes and where it
	// listens: 127.0.0.1 (the default), localhost (127.0.0.1 and, if the
	// system has it, [::1]) or another loopback address.
	Host string
	// IdPOnly runs only the OpenID Provider, with a printed client secret
	// and RedirectURIs, so that `moat serve` with your own configuration
	// can log in against it.
	IdPOnly bool
	// RedirectURIs are extra redirect URIs the demo client accepts (your
	// own moat's public_url + /auth/callback); PostLogoutRedirectURIs extra
	// post_logout_redirect_uris, by default each redirect URI's origin + /.
	RedirectURIs, PostLogoutRedirectURIs []string
	// CSRFMode is header (X-CSRF: 1) or fetch-metadata.
	CSRFMode string
	// ResourceAPI, if set, is an API to proxy /resource/api/ to instead of
	// the built-in recipe API.
	ResourceAPI string
	// AccessTokenTTL is the IdP's access-token lifetime.
	AccessTokenTTL time.Duration
	// Logger receives the three servers' logs; nil writes text to Run's
	// stdout (and discards them in Start).
	Logger *slog.Logger
}

// DefaultOptions are the options of a plain `moat demo`.
func DefaultOptions() Options {
	return Options{BFFPort: 4001, IdPPort: 9011, APIPort: 5001, AdminPort: 9090, CSRFMode: config.CSRFHeader, AccessTokenTTL: time.Minute}
}

func (o *Options) check() error {
	var errs []error
	if o.CSRFMode == "" {
		o.CSRFMode = config.CSRFHeader
	}
	if o.CSRFMode != config.CSRFHeader && o.CSRFMode != config.CSRFFetchMetadata {
		errs = append(errs, fmt.Errorf("--csrf-mode %q: use %s or %s", o.CSRFMode, config.CSRFHeader, config.CSRFFetchMetadata))
	}
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = time.Minute
	}
	if o.AccessTokenTTL < time.Second {
		errs = append(errs, fmt.Errorf("--access-token-ttl %s: use at least 1s", o.AccessTokenTTL))
	}
	if err := o.resolveHost(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, o.checkRedirectURIs()...)
	if o.ResourceAPI != "" {
		if u, err := url.Parse(o.ResourceAPI); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("--resource-api %q: give an absolute URL like http://127.0.0.1:8080/api/", o.ResourceAPI))
		} else if !strings.HasSuffix(o.ResourceAPI, "/") {
			o.ResourceAPI += "/"
		}
	}
	for _, p := range []struct {
		flag string
		v    int
	}{{"--bff-port", o.BFFPort}, {"--idp-port", o.IdPPort}, {"--api-port", o.APIPort}, {"--admin-port", o.AdminPort}} {
		if p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: not a port", p.flag, p.v))
		}
	}
	return errors.Join(errs...)
}

// System is a running demo.
type System struct {
	// BFFURL is moat's public URL, IssuerURL the IdP's issuer, APIURL what
	// /resource/api/ is proxied to: the recipe API's /api/, or
	// Options.ResourceAPI.
	BFFURL, IssuerURL, APIURL string
	// AdminURL is moat's admin listener; AdminToken opens its /admin/ API.
	AdminURL, AdminToken string
	// Landing is where the browser lands after login and logout.
	Landing string
	// ClientSecret is the demo client's secret at the IdP (ClientID);
	// RedirectURIs and PostLogoutRedirectURIs are all it accepts.
	ClientSecret                         string
	RedirectURIs, PostLogoutRedirectURIs []string
	// IdP is the running OpenID Provider; tests read its counters.
	IdP     *idp.Provider
	Options Options

	gw      *moat.Gateway
	servers []*http.Server
	errc    chan error
	cancel  context.CancelFunc
	once    sync.Once
}

// Start starts the IdP, the recipe API (unless Options.ResourceAPI is set)
// and moat, each on Options.Host, and returns once all three are listening.
// With Options.IdPOnly it starts the IdP alone. Close stops them.
func Start(ctx context.Context, o Options) (_ *System, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ports := []port{{"demo IdP", "--idp-port", o.IdPPort}}
	if !o.IdPOnly {
		ports = append(ports, port{"moat (BFF)", "--bff-port", o.BFFPort}, port{"moat admin", "--admin-port", o.AdminPort})
		if o.ResourceAPI == "" {
			ports = append(ports, port{"recipe API", "--api-port", o.APIPort})
		}
	}
	lns, err := listenAll(o.Host, ports, log)
	if err != nil {
		return nil, err
	}
	urlOf := func(l []net.Listener) string { return hostURL(o.Host, l[0].Addr().(*net.TCPAddr).Port) }

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &System{
		IssuerURL: urlOf(lns[0]), ClientSecret: rand.Text(),
		Options: o, errc: make(chan error, 2*len(ports)), cancel: cancel,
	}
	defer func() {
		if err != nil {
			s.Close()
			for _, l := range lns {
				for _, ln := range l {
					ln.Close()
				}
			}
		}
	}()
	redirects, postLogout := slices.Clone(o.RedirectURIs), slices.Clone(o.PostLogoutRedirectURIs)
	if !o.IdPOnly {
		s.BFFURL, s.AdminURL, s.AdminToken = urlOf(lns[1]), urlOf(lns[2]), rand.Text()+rand.Text()
		s.Landing = s.BFFURL + "/"
		if o.FrontendOrigin != "" {
			s.Landing = o.FrontendOrigin + "/"
		}
		redirects = append(redirects, s.BFFURL+"/auth/callback")
		postLogout = append(postLogout, s.Landing)
	}
	s.RedirectURIs, s.PostLogoutRedirectURIs = redirects, postLogout

	// 1. The OpenID Provider, serving before moat asks for its discovery.
	s.IdP, err = idp.New(idp.Config{
		Issuer: s.IssuerURL, ClientID: ClientID, ClientSecret: s.ClientSecret,
		RedirectURIs:           redirects,
		PostLogoutRedirectURIs: postLogout,
		AccessTokenTTL:         o.AccessTokenTTL,
		Logger:                 log,
	})
	if err != nil {
		return nil, err
	}
	s.serveAll(lns[0], s.IdP, log)
	if o.IdPOnly {
		return s, nil
	}
	bffLns, adminLns := lns[1], lns[2]
	clientSecret := s.ClientSecret

	// 2. The resource API: it trusts the IdP's keys and nothing else.
	s.APIURL = o.ResourceAPI
	if o.ResourceAPI == "" {
		s.APIURL = urlOf(lns[3]) + "/api/"
		s.serveAll(lns[3], api.New(bg, api.Config{Issuer: s.IssuerURL, Audience: ClientID, JWKSURL: s.IdP.JWKSURL()}), log)
	}

	// 3. moat, configured in Go like any embedding backend would.
	cfg := &config.Config{
		Listen:    bffLns[0].Addr().String(),
		PublicURL: s.BFFURL,
		OIDC: config.OIDC{
			Issuer: s.IssuerURL, ClientID: ClientID, ClientSecret: secret.String(clientSecret),
			PostLogoutRedirectURL: s.Landing,
			// Refresh a little before expiry, so short demo tokens are
			// refreshed when they are nearly used up and you can see it.
			RefreshSkew: config.Duration(min(o.AccessTokenTTL/4, 30*time.Second)),
		},
		Session: config.Session{Store: "memory", Keys: []secret.String{secret.String(session.NewKey())}},
		Routes:  []config.Route{{Prefix: "/resource/api/", Upstream: s.APIURL, Token: config.TokenUser}},
		CSRF:    config.CSRF{Mode: o.CSRFMode},
		Log:     config.Log{Format: "text"},
		Admin:   config.Admin{Listen: adminLns[0].Addr().String(), Token: secret.String(s.AdminToken)},
	}
	if o.FrontendOrigin != "" {
		cfg.FrontendURL = s.Landing
		cfg.CORS.AllowedOrigins = []string{o.FrontendOrigin}
	}
	cfg.SetDefaults()
	if err = cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	s.gw, err = moat.New(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s.gw.Handle("GET /api/protected-data", http.HandlerFunc(protectedData))
	s.gw.HandlePublic("/", spa.Handler())
	s.serveAll(bffLns, s.gw, log)
	s.serveAll(adminLns, s.gw.AdminHandler(), log)
	return s, nil
}

// serveAll serves h on each of the listeners of one port (127.0.0.1 and
// [::1] for localhost).
func (s *System) serveAll(lns []net.Listener, h http.Handler, log *slog.Logger) {
	for _, ln := range lns {
		s.serve(ln, h, log)
	}
}

func (s *System) serve(ln net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.servers = append(s.servers, srv)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("%s: %w", ln.Addr(), err)
		}
	}()
}

// Err reports a server that stopped on its own.
func (s *System) Err() <-chan error { return s.errc }

// Close stops the servers, letting requests in flight finish for a few
// seconds.
func (s *System) Close() error {
	var errs []error
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := len(s.servers) - 1; i >= 0; i-- { // moat first, the IdP last
			errs = append(errs, s.servers[i].Shutdown(ctx))
		}
		if s.gw != nil {
			errs = append(errs, s.gw.Close())
		}
		s.cancel()
	})
	return errors.Join(errs...)
}

// Run starts the demo, tells the person at stdout what to do, and runs
// until ctx ends (Ctrl-C).
func Run(ctx context.Context, o Options, stdout io.Writer) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(stdout, nil))
	}
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.IdPOnly {
		s.printIdPBanner(stdout)
	} else {
		s.printBanner(stdout)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nmoat demo: shutting down")
		return s.Close()
	case err := <-s.errc:
		return err
	}
}

func (s *System) printBanner(w io.Writer) {
	o := s.Options
	open := s.BFFURL + "/"
	if o.FrontendOrigin != "" {
		open = o.FrontendOrigin + "/ (your SPA; moat is at " + s.BFFURL + ")"
	}
	api := "recipe API: checks each Bearer JWT against the IdP's keys; never sees a cookie"
	if o.ResourceAPI != "" {
		api = "your resource API: moat proxies /resource/api/ to it with the Bearer token"
	}
	ttl := o.AccessTokenTTL
	fmt.Fprintf(w, `
moat demo is running. DEVELOPMENT ONLY: plain http, an in-memory IdP with a fixed password.

  Open      %s
  Log in    username %q, password %q

  %-28s moat (BFF): the SPA, /auth/*, /api/protected-data, /resource/api/*
  %-28s demo OpenID Provider (zitadel/oidc)
  %-28s %s
  %-28s moat's admin listener: Prometheus metrics at %s/metrics; your sessions:
      curl -H 'Authorization: Bearer %s' '%s/admin/sessions?sub=<sub from /auth/checksession>'

What to look at in DevTools (F12):
  Application → Cookies: the session is one cookie, __Host-Http-moat: HttpOnly, Secure,
    SameSite=Strict, an opaque ID. (__Host-moat-login, HttpOnly too, only ties a login in
    progress to this browser.) document.cookie is empty.
  Application → Local storage, Session storage, IndexedDB: empty. No token ever reaches the page.
  Network: the SPA's calls carry only that cookie and "X-CSRF: 1"; moat adds the Bearer token.
  Access tokens live %s and moat refreshes them %s before expiry: wait, click "Call API"
  again, and a "grant_type=refresh_token" line appears in the log below.

CSRF mode: %s.%s Press Ctrl-C to stop.

`, open, idp.DemoUser.Username, idp.DemoUser.Password, s.BFFURL, s.IssuerURL, s.APIURL, api,
		s.AdminURL, s.AdminURL, s.AdminToken, s.AdminURL,
		ttl, min(ttl/4, 30*time.Second), o.CSRFMode, s.ownMoat())
}

// ownMoat tells how to point another moat at the demo IdP, when
// --redirect-uri registered one.
func (s *System) ownMoat() string {
	if len(s.Options.RedirectURIs) == 0 {
		return ""
	}
	return fmt.Sprintf("\n\nYour own moat (redirect URIs %s) can log in here too:\n  oidc: {issuer: %s, client_id: %s, client_secret: %s}\n",
		strings.Join(s.Options.RedirectURIs, " "), s.IssuerURL, ClientID, s.ClientSecret)
}

// protectedData is a local API inside the BFF: moat runs it only for a
// live session (and a passing CSRF check) and hands it the user.
func protectedData(w http.ResponseWriter, r *http.Request) {
	u, ok := moat.User(r.Context())
	if !ok {
		httperr.Write(w, httperr.New(http.StatusUnauthorized, "unauthorized", "no session", nil))
		return
	}
	name, _ := u.Claims["name"].(string)
	httperr.WriteJSON(w, http.StatusOK, map[string]any{
		"message": fmt.Sprintf("Hello, %s! This answer comes from a Go handler inside the BFF, behind the session.", name),
		"subject": u.Subject,
		"orders": []map[string]any{
			{"id": "A-1041", "item": "Cast-iron skillet, 26 cm", "total": "39.00 EUR", "status": "delivered"},
			{"id": "A-1077", "item": "Chef's knife", "total": "64.50 EUR", "status": "shipped"},
			{"id": "A-1102", "item": "Spice sampler", "total": "18.90 EUR", "status": "preparing"},
		},
		"servedAt": time.Now().UTC().Format(time.RFC3339),
	})
}

// Package gateway assembles moat from its configuration: codec, store, IdP
// client, token manager, route table and HTTP server. The public moat
// package and the moat command both build on it.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/moat-bff/moat/internal/admin"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/proxy"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/server"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/token"
)

// Gateway is moat as an http.Handler.
type Gateway struct {
	*server.Server
	Sessions *session.Manager
	Tokens   *token.Manager
	IdP      *oidc.Client
	Routes   *proxy.Table
	Revoker  *revoke.Queue
	Admin    *admin.Handler // nil unless admin.listen is set
	store    session.Store
}

// Options are what tests and embedders may inject; zero values are the
// production choices.
type Options struct {
	// Now is the session clock (idle and absolute timeouts, token expiry).
	Now func() time.Time
	// Store replaces the store named by session.store.
	Store session.Store
}

// New builds a Gateway from a validated configuration. It does not need the
// IdP to be up: discovery is retried until it succeeds, and /readyz says so.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, o Options) (*Gateway, error) {
	for _, w := range cfg.Warnings() {
		log.Warn("insecure setting: " + w)
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
	if cfg.Session.Store != "memory" {
		kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := session.CheckKeys(kctx, store, codec)
		cancel()
		switch {
		case errors.Is(err, session.ErrWrongKeys):
			store.Close()
			return nil, fmt.Errorf("session.keys: none of the configured keys opens the sessions already in %s; "+
				"starting would log everybody out. Configure the key in use (rotate by adding a new key second, then moving it first, then removing the old one)", cfg.Session.Store)
		case err != nil:
			log.Warn("session store not reachable at startup; moat starts and reports not ready until it is", "error", err)
		}
	}
	idpClient, err := idpHTTPClient(cfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	idp := oidc.New(oidc.Config{
		Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, ClientSecret: cfg.OIDC.ClientSecret,
		AuthMethod: cfg.OIDC.ClientAuthMethod, Scopes: cfg.OIDC.Scopes,
		RedirectURL:      config.MustURL(cfg.PublicURL).JoinPath("/auth/callback").String(),
		TrustedAudiences: cfg.OIDC.TrustedAudiences,
		MaxIDTokenAge:    cfg.OIDC.MaxIDTokenAge.D(), ClockSkew: cfg.OIDC.ClockSkew.D(),
		HTTPClient: idpClient,
	}, log)
	sessions := session.NewManager(session.ManagerOptions{
		Store: store, Codec: codec, Logger: log, Now: o.Now,
		IdleTimeout: cfg.Session.IdleTimeout.D(), AbsoluteTimeout: cfg.Session.AbsoluteTimeout.D(),
	})
	tokens := token.NewManager(token.Options{
		Sessions: sessions, Refresher: idp, Skew: cfg.OIDC.RefreshSkew.D(),
		LeaseTTL: cfg.OIDC.Timeout.D() + 5*time.Second, Logger: log,
	})
	var routes []proxy.Route
	for i, r := range cfg.Routes {
		tlsCfg, err := upstreamTLS(r)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		routes = append(routes, proxy.Route{
			Name: r.Name, Prefix: r.Prefix, Upstream: config.MustURL(r.Upstream),
			Token: r.Token == config.TokenUser, Timeout: r.Timeout.D(), TLS: tlsCfg,
			Methods: r.Methods, MaxBodyBytes: r.MaxBodyBytes, AllowSetCookie: r.AllowSetCookie,
		})
	}
	table := proxy.New(routes, proxy.Options{Logger: log})
	revoker := revoke.Start(idp, log, revoke.Options{})
	srv, err := server.New(server.Deps{Config: cfg, Logger: log, Sessions: sessions, Tokens: tokens, IdP: idp, Routes: table, Revoker: revoker})
	if err != nil {
		revoker.Stop()
		store.Close()
		return nil, err
	}
	var adm *admin.Handler
	if cfg.Admin.Listen != "" {
		adm = admin.New(sessions, revoker, cfg.Admin.Token, log)
	}
	// Try discovery now so a misconfigured issuer shows in the first log
	// lines; failure is not fatal.
	dctx, cancel := context.WithTimeout(ctx, cfg.OIDC.Timeout.D())
	defer cancel()
	if _, err := idp.Discover(dctx); err != nil {
		log.Warn("identity provider not reachable yet; retrying on demand", "error", err)
	}
	return &Gateway{Server: srv, Sessions: sessions, Tokens: tokens, IdP: idp, Routes: table, Revoker: revoker, Admin: adm, store: store}, nil
}

// Close stops background work and releases the session store and idle
// upstream connections.
func (g *Gateway) Close() error {
	g.Revoker.Stop()
	g.Routes.CloseIdleConnections()
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
// connections or memory (no WriteTimeout: streamed responses may last).
func NewHTTPServer(cfg *config.Config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Server.ReadTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// maxIdPResponse bounds what moat reads from the IdP (discovery, JWKS,
// tokens, UserInfo), so a broken or hostile IdP cannot exhaust memory.
const maxIdPResponse = 1 << 20

// idpHTTPClient is the client for every IdP call: bounded in time and size,
// TLS roots from the system (SSL_CERT_FILE works) plus oidc.ca_file, and no
// redirects (a token request must not be replayed elsewhere).
func idpHTTPClient(cfg *config.Config) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.OIDC.CAFile != "" {
		pool, err := config.LoadCertPool(cfg.OIDC.CAFile)
		if err != nil {
			return nil, fmt.Errorf("oidc.ca_file: %w", err)
		}
		tlsCfg.RootCAs = pool
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment, DialContext: d.DialContext, TLSClientConfig: tlsCfg,
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: cfg.OIDC.Timeout.D(),
	}
	return &http.Client{
		Transport:     limitBody{tr},
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

// Check reaches the IdP's discovery document and the session store, and
// returns every problem, each naming its configuration key.
func (g *Gateway) Check(ctx context.Context) error {
	var errs []error
	if _, err := g.IdP.Discover(ctx); err != nil {
		errs = append(errs, fmt.Errorf("oidc.issuer: discovery failed (check the URL and that the IdP is reachable): %w", err))
	}
	if err := g.store.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("session.store: not reachable: %w", err))
	}
	return errors.Join(errs...)
}

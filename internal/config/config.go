// Package config is moat's configuration: one typed tree, decoded strictly
// from YAML (unknown keys are errors), completed with defaults in one place,
// secrets taken from files or the environment, and validated as a whole so
// that every problem is reported at once, each with its key and its fix.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/secret"
	"go.yaml.in/yaml/v3"
)

// Config is the whole of moat's configuration.
type Config struct {
	// Listen is the address of the main listener (browser traffic).
	Listen string `yaml:"listen"`
	// PublicURL is the origin browsers use to reach moat. The OAuth
	// redirect_uri is derived from it, never from request headers
	// (RFC 9700 §2.1).
	PublicURL string `yaml:"public_url"`
	// FrontendURL is where the browser lands after login and logout when the
	// SPA has its own origin (a dev server, a CDN). Empty: moat's own "/".
	FrontendURL string `yaml:"frontend_url"`

	OIDC    OIDC    `yaml:"oidc"`
	Session Session `yaml:"session"`
	Routes  []Route `yaml:"routes"`
	CORS    CORS    `yaml:"cors"`
	CSRF    CSRF    `yaml:"csrf"`
	Log     Log     `yaml:"log"`
	Admin   Admin   `yaml:"admin"`
	Server  Server  `yaml:"server"`
	Limits  Limits  `yaml:"rate_limit"`
	SPA     SPA     `yaml:"spa"`

	ForwardAuth ForwardAuth `yaml:"forward_auth"`

	// Frontends lets one moat serve several SPAs, each at its own origin
	// with its own OIDC client, routes and browser policies; the keys of a
	// Frontend are then set there, not here. See frontends.go.
	Frontends []Frontend `yaml:"frontends"`
	// Name is the frontend a view serves (Views): frontends[].name, or ""
	// without frontends.
	Name string `yaml:"-"`
}

// Server configures the browser-facing HTTP server.
type Server struct {
	// ReadHeaderTimeout bounds a client's request headers (slowloris).
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout Duration `yaml:"read_timeout"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds each write of a response to the client, not the
	// whole response: a client that stops reading is cut off (and its
	// upstream request cancelled), while a stream may last as long as its
	// events keep being read.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxHeaderBytes bounds request headers; larger ones get 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytes bounds request bodies outside the routes (local
	// handlers, /auth); routes have their own limit.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// TrustedProxies lists the CIDRs of reverse proxies in front of moat
	// whose X-Forwarded-For is believed; from anyone else it is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ShutdownGrace is how long in-flight requests, streams included, may
	// run after SIGTERM before connections are closed.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// InsecureExposeMetrics also serves /metrics on the main listener (it is
	// always on the admin listener). Metrics hold no secrets but tell anyone
	// who can reach moat about its traffic.
	InsecureExposeMetrics bool `yaml:"insecure_expose_metrics"`
	// TLSCertFile and TLSKeyFile make moat serve HTTPS itself, with HTTP/2,
	// so a browser's parallel API calls share one connection.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// H2C serves HTTP/2 without TLS (prior knowledge), for a TLS-terminating
	// proxy in front that speaks HTTP/2 to moat.
	H2C bool `yaml:"h2c"`
	// WebSocketCheck is how often an open WebSocket's session is checked;
	// a socket whose session ended is closed within about this long.
	WebSocketCheck Duration `yaml:"websocket_check"`
	// WebSocketMaxPerSession caps the WebSockets one session holds open on
	// this replica; the next handshake gets 429. Default 8.
	WebSocketMaxPerSession int `yaml:"websocket_max_per_session"`
}

// Limits are token buckets, per client IP and per session, so one client
// cannot starve the others or drive a flood through moat to the IdP or an
// upstream (BBA §6.1.4.1). They are per replica.
type Limits struct {
	// PerIP applies to every request of a client IP except health checks.
	PerIP Limit `yaml:"per_ip"`
	// PerSession applies to proxied and local API calls of one session.
	PerSession Limit `yaml:"per_session"`
	// Login applies per client IP to /auth/login and /auth/callback, which
	// create state and reach the IdP.
	Login Limit `yaml:"login"`
	// MaxKeys bounds how many clients and sessions are tracked at once.
	MaxKeys int `yaml:"max_keys"`
	// IPv6Prefix is how many leading bits of an IPv6 client address key
	// its per-IP and login buckets: one subscriber usually holds a whole
	// /64 (RFC 6177), so keying on /128 would leave it unlimited.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// PendingLogins caps the login transactions in flight, so that the
	// login limit per IP can be generous (see internal/pending).
	PendingLogins PendingLogins `yaml:"pending_logins"`
}

// Limit is a token bucket: Rate tokens per second, up to Burst.
type Limit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// SPA serves a single-page app's static files from moat's own origin, so
// its API calls are same-origin and need no CORS (BBA §6.1.3.3.2).
type SPA struct {
	// Dir holds the built app (index.html and assets); off when empty.
	Dir string `yaml:"dir"`
	// CSP is the Content-Security-Policy of every file served; the default
	// forbids inline and third-party script.
	CSP string `yaml:"csp"`
}

// DefaultCSP is a strict policy for SPAs served by moat: only same-origin
// script, style and connections, no framing, no plugins.
const DefaultCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// DefaultMethods are the methods a route forwards unless it lists its own.
var DefaultMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

// Admin configures the separate admin listener: /metrics, /healthz and
// /readyz, and the session admin API under /admin/. It is off unless Listen
// is set; it must not be reachable from browsers.
type Admin struct {
	Listen string `yaml:"listen"`
	// Token is the bearer token /admin/ requests must carry; without one the
	// session admin API is disabled. Also MOAT_ADMIN_TOKEN or token_file.
	Token     secret.String `yaml:"token"`
	TokenFile string        `yaml:"token_file"`
}

// OIDC configures moat as a confidential OpenID Connect client.
type OIDC struct {
	// Issuer is the OpenID Provider's issuer URL, exactly as its discovery
	// document states it (OIDC Discovery §4.3).
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates moat at the token endpoint
	// (draft-ietf-oauth-browser-based-apps §6.1.3.1). Also
	// MOAT_OIDC_CLIENT_SECRET or client_secret_file.
	ClientSecret     secret.String `yaml:"client_secret"`
	ClientSecretFile string        `yaml:"client_secret_file"`
	// ClientAuthMethod is client_secret_basic, client_secret_post,
	// private_key_jwt (OIDC Core §9, RFC 7523), tls_client_auth or
	// self_signed_tls_client_auth (RFC 8705 §2).
	ClientAuthMethod string `yaml:"client_auth_method"`
	// ClientKeyFile holds moat's private keys for private_key_jwt (PEM or
	// a JWK set); the first signs, all are published at /auth/jwks.
	ClientKeyFile string `yaml:"client_key_file"`
	// ClientCertFile is moat's TLS client certificate (PEM, with its chain)
	// for tls_client_auth and self_signed_tls_client_auth; its private key
	// is ClientKeyFile.
	ClientCertFile string `yaml:"client_cert_file"`
	// ClientAssertionAudience is the aud of client assertions: issuer (the
	// default, RFC 9126 §2, FAPI 2.0) or endpoint (the URL each assertion
	// is sent to, for IdPs that accept only their token endpoint).
	ClientAssertionAudience string   `yaml:"client_assertion_audience"`
	Scopes                  []string `yaml:"scopes"`
	// TrustedAudiences lists audiences besides client_id that an ID token
	// may carry; any other extra audience is rejected (OIDC Core 3.1.3.7 #3).
	TrustedAudiences []string `yaml:"trusted_audiences"`
	// CAFile adds PEM roots for the IdP's TLS certificate; the system pool
	// (and SSL_CERT_FILE) is used otherwise.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds every call to the IdP.
	Timeout Duration `yaml:"timeout"`
	// RefreshSkew is how long before expiry an access token is refreshed.
	RefreshSkew Duration `yaml:"refresh_skew"`
	// MaxIDTokenAge bounds how long ago an ID token's iat may lie
	// (OIDC Core 3.1.3.7 #10).
	MaxIDTokenAge Duration `yaml:"max_id_token_age"`
	// ClockSkew is the leeway for exp, iat and nbf checks.
	ClockSkew Duration `yaml:"clock_skew"`
	// InsecureLegacyLogoutTokens accepts back-channel logout tokens shaped
	// by the drafts of Back-Channel Logout 1.0 before its final version
	// (2022), as Ory Hydra 2.x sends them: typ JWT and no exp. Such a token
	// is accepted while its iat is within max_id_token_age.
	InsecureLegacyLogoutTokens bool `yaml:"insecure_legacy_logout_tokens"`
	// PostLogoutRedirectURL is sent as post_logout_redirect_uri at logout
	// (RP-Initiated Logout 1.0 §2); it must be registered at the IdP.
	// Empty: frontend_url, or public_url + "/" (Config.PostLogoutRedirect).
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	// ACRValues lists the acr_values an SPA may request at /auth/login for
	// step-up authentication; others are refused.
	ACRValues []string `yaml:"acr_values"`
	// PAR pushes authorization requests to the IdP (RFC 9126), so the
	// browser's URL carries only client_id and a one-time request_uri:
	// auto (when the IdP offers it), required, or off.
	PAR string `yaml:"par"`
	// AuthParams are extra authorization request parameters, such as
	// Auth0's audience or Google's access_type; see authparams.go.
	AuthParams map[string]string `yaml:"auth_params"`
	// RequestObject signs every authorization request into a request
	// object (JAR, RFC 9101) with the first key of ClientKeyFile; see
	// clientauth.go.
	RequestObject bool `yaml:"request_object"`
	// Profile "fapi2" turns on and enforces the FAPI 2.0 Security Profile
	// for the client side; see fapi.go.
	Profile string `yaml:"profile"`
	// DPoP binds each session's tokens to a key of its own (RFC 9449):
	// the key is made at login, kept sealed in the session record, and
	// signs a proof for every token request and every upstream call.
	DPoP bool `yaml:"dpop"`
}

// Session configures the server-side session.
type Session struct {
	// Store selects the backend: "memory" (tests and demos). A store URL
	// that holds a password can come from MOAT_SESSION_STORE or
	// store_file instead, so that it never sits in a config file.
	Store     string `yaml:"store"`
	StoreFile string `yaml:"store_file"`
	// Keys seal session records (AES-256-GCM): the first seals, all open.
	// Also MOAT_SESSION_KEYS (comma-separated) or keys_file (one per line).
	Keys     []secret.String `yaml:"keys"`
	KeysFile string          `yaml:"keys_file"`
	// IdleTimeout ends a session after this long without a request.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// AbsoluteTimeout ends a session this long after login, whatever the
	// activity (draft-ietf-oauth-browser-based-apps §6.1.2.2).
	AbsoluteTimeout Duration `yaml:"absolute_timeout"`
	// LoginTimeout is how long a started login may take to come back.
	LoginTimeout Duration `yaml:"login_timeout"`
	// CacheTTL is how long a replica reuses a decoded session without
	// rereading the store: the bound on how long a logout or revocation on
	// another replica takes to be seen here. At most 1s.
	CacheTTL Duration `yaml:"cache_ttl"`
	// CacheSize bounds how many sessions a replica keeps decoded.
	CacheSize int `yaml:"cache_size"`
}

// Route maps a path prefix on moat to an upstream API.
type Route struct {
	// Prefix is matched against the request path; the longest match wins.
	// It must start and end with "/".
	Prefix string `yaml:"prefix"`
	// Upstream is the absolute URL the prefix is replaced with.
	Upstream string `yaml:"upstream"`
	// Token is "user" (the session's access token, 401 without a session) or
	// "none" (no token is sent).
	Token string `yaml:"token"`
	// Timeout bounds the wait for the upstream's response headers.
	Timeout Duration `yaml:"timeout"`
	// InsecureHTTP allows a plain-http upstream off loopback. The access
	// token then crosses the network in clear (RFC 9700 §2.6).
	InsecureHTTP bool `yaml:"insecure_http"`
	// Name labels the route in logs and metrics; the prefix by default.
	Name string `yaml:"name"`
	// Methods the route forwards; others get 405 without an upstream call
	// (BBA §6.1.3.6). Default GET, HEAD, POST, PUT, PATCH, DELETE.
	Methods []string `yaml:"methods"`
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// InsecureAllowSetCookie passes the upstream's Set-Cookie headers
	// through to moat's origin; moat's own cookie names are dropped
	// regardless. Such cookies may be readable by script.
	InsecureAllowSetCookie bool `yaml:"insecure_allow_set_cookie"`
	// CAFile adds PEM roots for the upstream's certificate; ClientCertFile
	// and ClientKeyFile authenticate moat to it (mTLS).
	CAFile         string `yaml:"ca_file"`
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// HealthPath, if set, is a path on the upstream's origin that /readyz
	// probes and reports; a failing upstream does not make moat unready,
	// which would take every route down with it.
	HealthPath string `yaml:"health_path"`
	// WebSocket lets GET requests on this route upgrade to WebSocket. A
	// browser cannot add X-CSRF to a handshake, so the Origin header must
	// then be moat's own origin or one of cors.allowed_origins.
	WebSocket bool `yaml:"websocket"`
	// ForwardHeaders are request headers of the app's own that reach the
	// upstream besides the proxy's default list; the browser's other
	// headers are dropped (see routeheaders.go for what is refused).
	ForwardHeaders []string `yaml:"forward_headers"`
	// Resource, an absolute URI, makes the route's upstream receive a token
	// restricted to it (RFC 8707 resource indicator) instead of the
	// session's own.
	Resource string `yaml:"resource"`
	// TokenExchange, when set, makes the route's upstream receive the
	// user's token exchanged for one with this audience (RFC 8693); see
	// tokenexchange.go.
	TokenExchange *TokenExchange `yaml:"token_exchange"`
	// ClientScopes are the scopes asked for the client-credentials token of
	// token: client and user_or_client routes.
	ClientScopes []string `yaml:"client_scopes"`
	// InsecureAllowClearSiteData passes the upstream's Clear-Site-Data
	// header, with which it can delete moat's session cookie and the SPA's
	// storage; dropped otherwise.
	InsecureAllowClearSiteData bool `yaml:"insecure_allow_clear_site_data"`
	// Require lists conditions on the user's claims, all of which must hold
	// (403, or 401 step_up_required when a new login can meet them).
	Require []Requirement `yaml:"require"`
}

// CORS lists the browser origins allowed to call moat with credentials.
type CORS struct {
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// CSRF selects the cross-site request forgery defence
// (draft-ietf-oauth-browser-based-apps §6.1.3.3).
type CSRF struct {
	// Mode is "header" (X-CSRF: 1 required; the default) or "fetch-metadata"
	// (for SPAs that cannot add a header: Sec-Fetch-Site and Origin decide).
	Mode string `yaml:"mode"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text; json unless standard error is a terminal.
	Format string `yaml:"format"`
	// Subject adds the user's OIDC sub to access log lines (personal data:
	// off by default).
	Subject bool `yaml:"subject"`
}

// Token policies of a Route.
const (
	TokenUser = "user"
	TokenNone = "none"
	// TokenClient sends moat's own client-credentials token (RFC 6749
	// §4.4), with or without a session.
	TokenClient = "client"
	// TokenUserOrClient sends the user's token when a session exists and
	// the client token otherwise.
	TokenUserOrClient = "user_or_client"
	// TokenOptionalUser sends the user's token when a session exists and
	// no token otherwise.
	TokenOptionalUser = "optional_user"
)

// tokenTypes lists the values of routes[].token.
var tokenTypes = []string{TokenUser, TokenNone, TokenClient, TokenUserOrClient, TokenOptionalUser}

// CSRF modes.
const (
	CSRFHeader        = "header"
	CSRFFetchMetadata = "fetch-metadata"
)

// Client authentication methods (RFC 7591 §2).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	// AuthPrivateKeyJWT signs a client assertion with moat's own key
	// instead of sending a shared secret.
	AuthPrivateKeyJWT = "private_key_jwt"
	// AuthTLSClient and AuthSelfSignedTLS authenticate with a TLS client
	// certificate (RFC 8705 §2); see clientauth.go.
	AuthTLSClient     = "tls_client_auth"
	AuthSelfSignedTLS = "self_signed_tls_client_auth"
)

// Env is how Load reads environment variables; os.LookupEnv in production.
type Env func(key string) (string, bool)

// Load reads, completes and validates the configuration at path. It
// reports every problem in one error, decoding (unknown keys, wrong types)
// and validation alike, each naming its key path.
func Load(path string, env Env) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, decodeErr := Parse(raw)
	if cfg == nil {
		return nil, fmt.Errorf("%s: %w", path, decodeErr)
	}
	resolveErr := cfg.Resolve(env)
	cfg.SetDefaults()
	// A key that did not decode holds its default or nothing: what
	// Validate says about it would only repeat the decoding problem.
	var bad []string
	for _, e := range flatten(decodeErr) {
		bad = append(bad, keyOf(e))
	}
	errs := append(flatten(decodeErr), flatten(resolveErr)...)
	for _, e := range flatten(cfg.Validate()) {
		if !slices.ContainsFunc(bad, func(p string) bool { return under(keyOf(e), p) }) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Parse decodes YAML strictly: every unknown key and every value of the
// wrong type is reported, by key path with its line, in one joined error
// of *KeyError. The returned Config holds whatever decoded; it is nil only
// when the text is not YAML at all.
func Parse(raw []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid YAML: more than one document")
	}
	cfg := &Config{}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		var d decoder
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "", "")
		return cfg, errors.Join(d.errs...)
	}
	return cfg, nil
}

// Resolve fills secrets from the environment and from *_file keys. A secret
// given twice is an error, so nobody wonders which one won.
func (c *Config) Resolve(env Env) error {
	var errs []error
	one := func(s secret.String) []secret.String {
		if s.IsZero() {
			return nil
		}
		return []secret.String{s}
	}
	first := func(l []secret.String) secret.String {
		if len(l) == 0 {
			return ""
		}
		return l[0]
	}
	v, err := resolveSecret(env, "oidc.client_secret", "MOAT_OIDC_CLIENT_SECRET", c.OIDC.ClientSecretFile, one(c.OIDC.ClientSecret), false)
	errs = append(errs, err)
	c.OIDC.ClientSecret = first(v)
	for i := range c.Frontends {
		o := &c.Frontends[i].OIDC
		v, err := resolveSecret(env, fmt.Sprintf("frontends[%d].oidc.client_secret", i), "", o.ClientSecretFile, one(o.ClientSecret), false)
		errs = append(errs, err)
		o.ClientSecret = first(v)
	}
	v, err = resolveSecret(env, "admin.token", "MOAT_ADMIN_TOKEN", c.Admin.TokenFile, one(c.Admin.Token), false)
	errs = append(errs, err)
	c.Admin.Token = first(v)
	c.Session.Keys, err = resolveSecret(env, "session.keys", "MOAT_SESSION_KEYS", c.Session.KeysFile, c.Session.Keys, true)
	errs = append(errs, err)
	v, err = resolveSecret(env, "session.store", "MOAT_SESSION_STORE", c.Session.StoreFile, one(secret.String(c.Session.Store)), false)
	errs = append(errs, err)
	c.Session.Store = strings.TrimSpace(first(v).Reveal())
	return errors.Join(errs...)
}

// resolveSecret returns a secret setting from the one place it was given:
// the file's key, the environment variable, or the key's _file companion.
// A list (multi) is comma-separated in the environment and one per line in
// its file.
func resolveSecret(env Env, key, envVar, file string, inline []secret.String, multi bool) ([]secret.String, error) {
	var from []string
	out := inline
	if len(inline) > 0 {
		from = append(from, key)
	}
	split := func(s, sep string) []secret.String {
		if !multi {
			return splitSecrets([]string{s})
		}
		return splitSecrets(strings.Split(s, sep))
	}
	if v, ok := env(envVar); envVar != "" && ok && v != "" {
		from = append(from, envVar)
		out = split(v, ",")
	}
	if file != "" {
		from = append(from, key+"_file")
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", key, err)
		}
		out = split(string(b), "\n")
	}
	if len(from) > 1 {
		return nil, fmt.Errorf("%s: given in %s; keep one", key, strings.Join(from, " and "))
	}
	return out, nil
}

func splitSecrets(parts []string) []secret.String {
	var out []secret.String
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, secret.String(p))
		}
	}
	return out
}

// SetDefaults fills every unset key with its default. It is the one place
// defaults live.
func (c *Config) SetDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.Listen, "127.0.0.1:4001")
	if len(c.Frontends) == 0 {
		c.setFrontendDefaults()
	}
	for i, v := range c.Views() {
		if len(c.Frontends) > 0 {
			v.setFrontendDefaults()
			c.Frontends[i] = v.frontend()
		}
	}
	def(&c.Session.Store, "memory")
	defDur(&c.Session.IdleTimeout, time.Hour)
	defDur(&c.Session.AbsoluteTimeout, 12*time.Hour)
	defDur(&c.Session.LoginTimeout, 10*time.Minute)
	defDur(&c.Session.CacheTTL, 500*time.Millisecond)
	if c.Session.CacheSize == 0 {
		c.Session.CacheSize = 20_000
	}
	defDur(&c.Server.ReadHeaderTimeout, 10*time.Second)
	defDur(&c.Server.ReadTimeout, time.Minute)
	defDur(&c.Server.IdleTimeout, 2*time.Minute)
	defDur(&c.Server.WriteTimeout, 30*time.Second)
	defDur(&c.Server.ShutdownGrace, 30*time.Second)
	defDur(&c.Server.WebSocketCheck, 5*time.Second)
	if c.Server.WebSocketMaxPerSession == 0 {
		c.Server.WebSocketMaxPerSession = 8
	}
	if c.Server.MaxHeaderBytes == 0 {
		c.Server.MaxHeaderBytes = 32 << 10
	}
	if c.Server.MaxBodyBytes == 0 {
		c.Server.MaxBodyBytes = 1 << 20
	}
	defLimit := func(l *Limit, rate float64, burst int) {
		if l.Rate == 0 {
			l.Rate = rate
		}
		if l.Burst == 0 {
			l.Burst = burst
		}
	}
	defLimit(&c.Limits.PerIP, 100, 200)
	defLimit(&c.Limits.PerSession, 50, 100)
	defLimit(&c.Limits.Login, 1, 600)
	if c.Limits.MaxKeys == 0 {
		c.Limits.MaxKeys = 100_000
	}
	c.Limits.setDefaults()
	def(&c.Log.Level, "info")
}

// setFrontendDefaults fills the unset keys of c's frontend (Frontend).
func (c *Config) setFrontendDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.OIDC.ClientAuthMethod, AuthSecretBasic)
	def(&c.OIDC.ClientAssertionAudience, AssertionAudIssuer)
	if c.OIDC.Profile == ProfileFAPI2 {
		def(&c.OIDC.PAR, "required")
	}
	def(&c.OIDC.PAR, "auto")
	if len(c.OIDC.Scopes) == 0 {
		c.OIDC.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	defDur(&c.OIDC.Timeout, 10*time.Second)
	defDur(&c.OIDC.RefreshSkew, 30*time.Second)
	defDur(&c.OIDC.MaxIDTokenAge, 10*time.Minute)
	defDur(&c.OIDC.ClockSkew, time.Minute)
	for i := range c.Routes {
		r := &c.Routes[i]
		def(&r.Token, TokenUser)
		def(&r.Name, r.Prefix)
		defDur(&r.Timeout, 30*time.Second)
		if len(r.Methods) == 0 {
			r.Methods = slices.Clone(DefaultMethods)
		}
		if r.MaxBodyBytes == 0 {
			r.MaxBodyBytes = 10 << 20
		}
	}
	if c.SPA.Dir != "" {
		def(&c.SPA.CSP, DefaultCSP)
	}
	def(&c.CSRF.Mode, CSRFHeader)
}

// Duration is a time.Duration written as "90s", "15m" or "12h".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration like 90s, 15m or 12h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MustURL parses a URL that Validate has already accepted.
func MustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(fmt.Sprintf("config: URL %q passed validation but does not parse: %v", s, err))
	}
	return u
}

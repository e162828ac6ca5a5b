package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/frontend"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
)

// reservedPrefixes are paths moat serves itself; no route may shadow them.
var reservedPrefixes = []string{"/auth/", "/healthz", "/readyz", "/metrics", ForwardAuthPrefix}

// Validate checks the whole tree and returns every problem, joined, each
// naming its key and how to fix it. It changes nothing.
func (c *Config) Validate() error {
	if len(c.Frontends) > 0 {
		return c.validateFrontends(c.validate(false))
	}
	return c.validate(false)
}

// validate checks c; mounted is true for a frontend's view, whose
// public_url may have a path (frontends sharing an origin).
func (c *Config) validate(mounted bool) error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", "%q is not host:port (e.g. 127.0.0.1:4001 or :4001)", c.Listen)
	}
	if u, err := checkURL(c.PublicURL); err != nil {
		add("public_url", "%v", err)
	} else if !mounted && u.Path != "" && u.Path != "/" {
		add("public_url", "must be an origin without a path (the session cookie is __Host-, which needs Path=/), e.g. https://app.example.com; to serve several SPAs at paths of one origin, give each a frontends[].public_url with its path")
	} else if _, err := frontend.Prefix(u); err != nil {
		add("public_url", "%v", err)
	}
	if c.FrontendURL != "" {
		if _, err := checkURL(c.FrontendURL); err != nil {
			add("frontend_url", "%v", err)
		}
	}

	o := c.OIDC
	if _, err := checkURL(o.Issuer); err != nil {
		add("oidc.issuer", "%v", err)
	}
	if o.ClientID == "" {
		add("oidc.client_id", "is required: the client ID registered at the IdP")
	}
	if o.ClientSecret.IsZero() && o.ClientAuthMethod != AuthPrivateKeyJWT && !IsMTLS(o.ClientAuthMethod) {
		env := ", or MOAT_OIDC_CLIENT_SECRET"
		if c.Name != "" {
			env = "" // the variable is the top-level key's only
		}
		add("oidc.client_secret", "is required: moat is a confidential client; set it or client_secret_file%s (or use client_auth_method: private_key_jwt or tls_client_auth)", env)
	}
	if !slices.Contains([]string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLS}, o.ClientAuthMethod) {
		add("oidc.client_auth_method", "%q is not supported; use %s, %s, %s, %s or %s", o.ClientAuthMethod, AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLS)
	}
	keys := c.validateClientKeys(add)
	if !slices.Contains([]string{"auto", "required", "off"}, o.PAR) {
		add("oidc.par", "%q is not a mode; use auto, required or off", o.PAR)
	}
	o.checkAuthParams(add)
	c.validateProfile(keys, add)
	if !slices.Contains(o.Scopes, "openid") {
		add("oidc.scopes", "must contain openid (moat is an OpenID Connect client)")
	}
	if o.PostLogoutRedirectURL != "" {
		if _, err := checkURL(o.PostLogoutRedirectURL); err != nil {
			add("oidc.post_logout_redirect_url", "%v", err)
		}
	}
	if o.CAFile != "" {
		if _, err := LoadCertPool(o.CAFile); err != nil {
			add("oidc.ca_file", "%v", err)
		}
	}

	s := c.Session
	if err := backend.CheckURL(s.Store); err != nil {
		add("session.store", "%v", err)
	}
	for i, k := range s.Keys {
		if _, err := session.ParseKey(k.Reveal()); err != nil {
			add(fmt.Sprintf("session.keys[%d]", i), "%v", err)
		}
	}
	if len(s.Keys) == 0 && s.Store != "memory" && c.IsLoopback() {
		// A generated key would differ at the next start, which then could
		// not open the stored sessions and would refuse to run.
		add("session.keys", "is required with a persistent session.store (%s): a generated key would change at every start; generate one with `moat keygen` and set it here, in keys_file, or in MOAT_SESSION_KEYS", strings.SplitN(s.Store, ":", 2)[0])
	}
	if len(s.Keys) == 0 && !c.IsLoopback() {
		add("session.keys", "is required off loopback (sessions must survive restarts and be shared by replicas); generate one with `moat keygen` and set it here, in keys_file, or in MOAT_SESSION_KEYS")
	}
	if s.CacheTTL.D() > time.Second {
		add("session.cache_ttl", "%s is more than 1s: a logout on another replica would take that long to be seen here", s.CacheTTL.D())
	}
	if s.CacheSize < 0 {
		add("session.cache_size", "must not be negative")
	}
	if s.IdleTimeout > s.AbsoluteTimeout {
		add("session.idle_timeout", "%s exceeds absolute_timeout %s; lower it", s.IdleTimeout.D(), s.AbsoluteTimeout.D())
	}

	seen := map[string]int{}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if !strings.HasPrefix(r.Prefix, "/") || !strings.HasSuffix(r.Prefix, "/") {
			add(key+".prefix", "%q must start and end with / (e.g. /api/orders/)", r.Prefix)
		} else if strings.ContainsFunc(r.Prefix, notPathChar) {
			add(key+".prefix", "%q may hold only letters, digits and - . _ ~ /", r.Prefix)
		} else if cleaned := cleanPrefix(r.Prefix); cleaned != r.Prefix {
			add(key+".prefix", "%q is not a clean path; use %q", r.Prefix, cleaned)
		}
		for _, p := range reservedPrefixes {
			if strings.HasPrefix(r.Prefix, p) || strings.HasPrefix(p, r.Prefix) {
				add(key+".prefix", "%q overlaps %s, which moat serves itself", r.Prefix, p)
			}
		}
		if j, dup := seen[r.Prefix]; dup {
			add(key+".prefix", "%q is also routes[%d].prefix", r.Prefix, j)
		}
		seen[r.Prefix] = i
		u, err := url.Parse(r.Upstream)
		switch {
		case err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			add(key+".upstream", "%q must be an absolute http(s) URL, e.g. https://api.internal/orders/", r.Upstream)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			add(key+".upstream", "%q must not have a query, fragment or user info", r.Upstream)
		case !strings.HasSuffix(u.Path, "/"):
			add(key+".upstream", "%q must end with / like its prefix", r.Upstream)
		case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) && !r.InsecureHTTP:
			add(key+".upstream", "%q is plain http off loopback, which sends access tokens in clear; use https, or set insecure_http: true on this route", r.Upstream)
		}
		if !slices.Contains(tokenTypes, r.Token) {
			add(key+".token", "%q is not a token type; use one of %v", r.Token, tokenTypes)
		}
		if r.Resource != "" {
			if !isResourceURI(r.Resource) {
				add(key+".resource", "%q must be an absolute URI without a fragment (RFC 8707 §2), e.g. https://api.example.com/", r.Resource)
			}
			if r.Token != TokenUser {
				add(key+".resource", "needs token: %s (a resource token is obtained with the user's refresh token)", TokenUser)
			}
		}
		if len(r.ClientScopes) > 0 && r.Token != TokenClient && r.Token != TokenUserOrClient {
			add(key+".client_scopes", "applies only to token: %s or %s", TokenClient, TokenUserOrClient)
		}
		if r.HealthPath != "" && !strings.HasPrefix(r.HealthPath, "/") {
			add(key+".health_path", "%q must be a path starting with /", r.HealthPath)
		}
		if r.WebSocket && !slices.Contains(r.Methods, "GET") {
			add(key+".websocket", "needs GET among the route's methods (the handshake is a GET)")
		}
		for _, m := range r.Methods {
			if !slices.Contains(DefaultMethods, m) && m != "OPTIONS" {
				add(key+".methods", "%q is not a method moat forwards; use some of %v or OPTIONS", m, DefaultMethods)
			}
		}
		errs = append(errs, validateRouteHeaders(key, r)...)
		errs = append(errs, validateTokenExchange(key, r)...)
		if r.MaxBodyBytes < 0 {
			add(key+".max_body_bytes", "must be positive")
		}
		c.validateRequire(i, r, add)
		if r.CAFile != "" {
			if _, err := LoadCertPool(r.CAFile); err != nil {
				add(key+".ca_file", "%v", err)
			}
		}
		if (r.ClientCertFile == "") != (r.ClientKeyFile == "") {
			add(key+".client_cert_file", "client_cert_file and client_key_file go together")
		} else if r.ClientCertFile != "" {
			if _, err := tls.LoadX509KeyPair(r.ClientCertFile, r.ClientKeyFile); err != nil {
				add(key+".client_cert_file", "%v", err)
			}
		}
	}

	for i, o := range c.CORS.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			add(fmt.Sprintf("cors.allowed_origins[%d]", i), "%v", err)
		}
	}
	if c.CSRF.Mode != CSRFHeader && c.CSRF.Mode != CSRFFetchMetadata {
		add("csrf.mode", "%q is not a mode; use %s or %s", c.CSRF.Mode, CSRFHeader, CSRFFetchMetadata)
	}
	for i, p := range c.Server.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not an IP or CIDR like 10.0.0.0/8", p)
		}
	}
	if (c.Server.TLSCertFile == "") != (c.Server.TLSKeyFile == "") {
		add("server.tls_cert_file", "tls_cert_file and tls_key_file go together")
	} else if c.Server.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.Server.TLSCertFile, c.Server.TLSKeyFile); err != nil {
			add("server.tls_cert_file", "%v", err)
		}
		if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme != "https" {
			add("public_url", "must be https when moat serves TLS itself")
		}
	}
	if c.Server.WebSocketMaxPerSession < 0 {
		add("server.websocket_max_per_session", "%d is negative; use at least 1 (default 8)", c.Server.WebSocketMaxPerSession)
	}
	if c.Server.MaxHeaderBytes < 1024 {
		add("server.max_header_bytes", "%d is too small; use at least 1024", c.Server.MaxHeaderBytes)
	}
	for name, l := range map[string]Limit{"per_ip": c.Limits.PerIP, "per_session": c.Limits.PerSession, "login": c.Limits.Login} {
		if l.Rate < 0 || l.Burst < 1 {
			add("rate_limit."+name, "rate must be positive and burst at least 1")
		}
	}
	c.Limits.validate(add)
	if c.SPA.Dir != "" {
		if fi, err := os.Stat(filepath.Join(c.SPA.Dir, "index.html")); err != nil || fi.IsDir() {
			add("spa.dir", "%q has no index.html", c.SPA.Dir)
		}
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			add("admin.listen", "%q is not host:port (e.g. 127.0.0.1:4002)", c.Admin.Listen)
		}
		if c.Admin.Listen == c.Listen {
			add("admin.listen", "must differ from listen: the admin API must not be reachable from browsers")
		}
		if !c.Admin.Token.IsZero() && len(c.Admin.Token.Reveal()) < 32 {
			add("admin.token", "must be at least 32 characters (e.g. the output of `moat keygen`); also token_file or MOAT_ADMIN_TOKEN")
		}
	}
	for i, v := range c.OIDC.ACRValues {
		if v == "" || strings.ContainsAny(v, " \t\n") {
			add(fmt.Sprintf("oidc.acr_values[%d]", i), "%q must be a single non-empty value without spaces", v)
		}
	}
	c.validateForwardAuth(add)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not a level; use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "" && c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format", "%q is not a format; use json or text", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Warnings lists the relaxations of a secure default that c makes, and
// settings that are valid but likely wrong (a scope rule on a scope moat
// never asks for); moat logs each at startup and moat check prints them.
// A frontend's are named frontends[i].key.
func (c *Config) Warnings() []string {
	w := c.warnings()
	views := c.Views()
	for i, v := range views {
		if v.Name == "" {
			break // no frontends: c's own are all there are
		}
		for _, s := range v.warnings() {
			if key, _, _ := strings.Cut(s, " "); isAppKey(key) {
				w = append(w, fmt.Sprintf("frontends[%d].%s", i, s))
			}
		}
	}
	return append(w, sharedOrigins(views)...)
}

func (c *Config) warnings() []string {
	var w []string
	for i, r := range c.Routes {
		if r.InsecureHTTP {
			w = append(w, fmt.Sprintf("routes[%d].insecure_http is set: access tokens for %s travel in clear to %s", i, r.Prefix, r.Upstream))
		}
		if r.InsecureAllowClearSiteData {
			w = append(w, fmt.Sprintf("routes[%d].insecure_allow_clear_site_data is set: %s may send Clear-Site-Data, which deletes moat's session cookie in the browser", i, r.Upstream))
		}
		if r.InsecureAllowSetCookie {
			w = append(w, fmt.Sprintf("routes[%d].insecure_allow_set_cookie is set: %s may set cookies on moat's origin, which script may read", i, r.Upstream))
		}
		for j, q := range r.Require {
			for _, s := range q.Scope {
				if !slices.Contains(c.OIDC.Scopes, s) {
					w = append(w, fmt.Sprintf("routes[%d].require[%d].scope: %q is not in oidc.scopes: moat never asks for it, so the rule holds only for an IdP that grants it unasked (as Keycloak's default client scopes are); add it to oidc.scopes", i, j, s))
				}
			}
		}
	}
	if c.OIDC.InsecureLegacyLogoutTokens {
		w = append(w, "oidc.insecure_legacy_logout_tokens is set: back-channel logout tokens typed JWT or without exp are accepted, each for max_id_token_age after its iat (Back-Channel Logout 1.0 drafts before 2022; Ory Hydra 2.x)")
	}
	if c.Server.InsecureExposeMetrics {
		w = append(w, "server.insecure_expose_metrics is set: anyone who reaches moat can read its traffic metrics")
	}
	if c.CSRF.Mode == CSRFFetchMetadata {
		w = append(w, "csrf.mode is fetch-metadata: cross-site requests are refused by Sec-Fetch-Site and Origin alone, without the custom header the BFF draft recommends (§6.1.3.3.2)")
	}
	if c.Session.Store == "memory" && !c.IsLoopback() {
		w = append(w, "session.store is memory: sessions end when moat restarts and are not shared between replicas; use bolt://, redis:// or postgres://")
	}
	if len(c.Session.Keys) == 0 {
		// Only with the memory store (Validate requires keys otherwise),
		// whose sessions end at a restart anyway.
		w = append(w, "session.keys is empty: a random key was generated for this process only, like the memory store's sessions it ends when moat restarts (run `moat keygen` and configure session.keys before choosing a persistent store)")
	}
	return w
}

// IsLoopback reports whether moat is published on a loopback host only
// (development and tests), where plain http and generated keys are allowed:
// with frontends, every one of them.
func (c *Config) IsLoopback() bool {
	if len(c.Frontends) > 0 {
		for _, v := range c.Views() {
			if !v.IsLoopback() {
				return false
			}
		}
		return true
	}
	u, err := url.Parse(c.PublicURL)
	return err == nil && IsLoopbackHost(u.Hostname())
}

// IsLoopbackHost reports whether host is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isResourceURI reports whether s is an absolute URI without a fragment, the
// form RFC 8707 §2 requires of a resource indicator (and RFC 8693 §2.1 of a
// token exchange's resource). A bare trailing "#" leaves url.URL.Fragment
// empty, hence the look at the raw string.
func isResourceURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && !strings.Contains(s, "#")
}

// checkURL accepts an absolute https URL, or http on a loopback host.
func checkURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("is required, e.g. https://app.example.com")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute URL, e.g. https://app.example.com", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q must not have user info, a query or a fragment", s)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
	case u.Scheme == "http":
		return nil, fmt.Errorf("%q must use https (http is allowed only for loopback hosts)", s)
	default:
		return nil, fmt.Errorf("%q must be an https URL", s)
	}
	return u, nil
}

// checkOrigin accepts a serialized origin (RFC 6454 §6.2) such as
// https://app.example.com:8443: no path, no wildcard.
func checkOrigin(s string) error {
	if strings.Contains(s, "*") {
		return fmt.Errorf("%q: wildcards are not allowed; list each origin", s)
	}
	u, err := checkURL(s)
	if err != nil {
		return err
	}
	if u.Path != "" || u.String() != s {
		return fmt.Errorf("%q is not an origin; use scheme://host[:port] with no path or trailing slash", s)
	}
	return nil
}

func notPathChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~/", r))
}

func cleanPrefix(p string) string {
	var out []string
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if seg != "" && seg != "." && seg != ".." {
			out = append(out, seg)
		}
	}
	if len(out) == 0 {
		return "/"
	}
	return "/" + strings.Join(out, "/") + "/"
}

// ParsePrefix reads an IP ("10.1.2.3") or a CIDR ("10.0.0.0/8").
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// LoadCertPool reads PEM certificates from path into a fresh pool that also
// holds the system roots.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

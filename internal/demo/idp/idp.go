// Package idp is the OpenID Provider of `moat demo`: a development IdP that
// runs in process, built on the OpenID-certified zitadel/oidc op package.
// It has one user and one confidential client (the BFF), and offers the
// authorization code flow with PKCE S256, rotating refresh tokens, JWT
// access tokens, UserInfo, RFC 7009 revocation and RP-initiated logout.
//
// It is for demos and tests only: it speaks plain http, keeps everything in
// memory, and knows a fixed password.
package idp

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is the demo user.
type User struct {
	Subject       string
	Username      string
	Password      string
	GivenName     string
	FamilyName    string
	Email         string
	EmailVerified bool
}

// DemoUser is the one account the IdP knows. The password is fixed so the
// demo is easy to follow; this IdP must never face a network.
var DemoUser = User{
	Subject: "3c1e5b0d-demo-user", Username: "demo", Password: "demo-password",
	GivenName: "Dana", FamilyName: "Demo", Email: "dana.demo@example.com", EmailVerified: true,
}

// JWKSPath is where the IdP publishes its signing keys; discovery points
// jwks_uri here (the library's default is /keys).
const JWKSPath = "/.well-known/jwks.json"

// Config configures the IdP.
type Config struct {
	// Issuer is the issuer URL exactly, e.g. http://127.0.0.1:9011.
	Issuer string
	// ClientID and ClientSecret register the BFF (client_secret_basic).
	ClientID     string
	ClientSecret string
	// RedirectURIs are the BFF's /auth/callback URLs.
	RedirectURIs []string
	// PostLogoutRedirectURIs are where end_session may send the browser.
	PostLogoutRedirectURIs []string
	// AccessTokenTTL is the access tokens' lifetime; short in the demo so
	// that refreshes happen while you watch. Default 60s.
	AccessTokenTTL time.Duration
	// Logger receives a warning about the insecure setup; nil discards.
	Logger *slog.Logger
}

// Provider is the running IdP, an http.Handler.
type Provider struct {
	cfg     Config
	store   *storage
	op      *op.Provider
	handler http.Handler

	mu     sync.Mutex
	issued []Token
}

// Token is a token the IdP issued.
type Token struct {
	Kind  string // access_token, refresh_token or id_token
	Value string
}

// New builds the IdP. It does not listen; serve it on the issuer's address.
func New(cfg Config) (*Provider, error) {
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" || len(cfg.RedirectURIs) == 0 {
		return nil, errors.New("idp: ClientID, ClientSecret and RedirectURIs are required")
	}
	store, err := newStorage(&client{
		id: cfg.ClientID, secret: cfg.ClientSecret,
		redirectURIs: cfg.RedirectURIs, postLogoutRedirects: cfg.PostLogoutRedirectURIs,
	}, DemoUser, cfg.AccessTokenTTL)
	if err != nil {
		return nil, err
	}
	var cryptoKey [32]byte // encrypts the library's opaque authorization codes
	rand.Read(cryptoKey[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              rand.Text(),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
	}, store, op.StaticIssuer(cfg.Issuer),
		// The issuer is plain http on loopback. OpenID Connect requires
		// https; this option relaxes that, which is acceptable only for a
		// development IdP that never leaves the machine.
		op.WithAllowInsecure(),
		op.WithCustomKeysEndpoint(op.NewEndpoint(JWKSPath)),
	)
	if err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	cfg.Logger.Warn("demo IdP: development only — plain http issuer, in-memory state, fixed demo password", "issuer", cfg.Issuer)

	p := &Provider{cfg: cfg, store: store, op: provider}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", p.loginPage)
	mux.HandleFunc("POST /login", p.login)
	mux.HandleFunc("GET /login.css", loginCSS)
	mux.HandleFunc("GET /logged-out", loggedOut)
	mux.Handle("/", provider)
	p.handler = p.recordTokens(mux)
	return p, nil
}

// ServeHTTP implements http.Handler.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// Issuer is the issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// JWKSURL is the URL of the IdP's public keys.
func (p *Provider) JWKSURL() string { return strings.TrimSuffix(p.cfg.Issuer, "/") + JWKSPath }

// Refreshes counts the refresh_token grants the IdP has honoured (a test
// hook).
func (p *Provider) Refreshes() int { n, _ := p.store.counts(); return n }

// Revocations counts the tokens revoked through the revocation endpoint (a
// test hook).
func (p *Provider) Revocations() int { _, n := p.store.counts(); return n }

// IssuedTokens returns every access, refresh and ID token the token
// endpoint has handed out, raw (a test hook: tests search the browser for
// them).
func (p *Provider) IssuedTokens() []Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.issued)
}

// recordTokens keeps a copy of every successful token response's tokens.
func (p *Provider) recordTokens(next http.Handler) http.Handler {
	tokenPath := p.op.TokenEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != tokenPath {
			next.ServeHTTP(w, r)
			return
		}
		r.ParseForm() // the library's own ParseForm then finds it done
		grant := r.PostForm.Get("grant_type")
		rec := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		p.cfg.Logger.Info("demo IdP: token endpoint", "grant_type", grant, "status", rec.status)
		var body struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			IDToken      string `json:"id_token"`
		}
		if rec.status != http.StatusOK || json.Unmarshal(rec.buf.Bytes(), &body) != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, t := range []Token{{"access_token", body.AccessToken}, {"refresh_token", body.RefreshToken}, {"id_token", body.IDToken}} {
			if t.Value != "" {
				p.issued = append(p.issued, t)
			}
		}
	})
}

type teeWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

// The login UI. The op package redirects the browser here with the ID of
// the authorization request; a correct password marks that request done
// and sends the browser back to the library, which issues the code.

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in · moat demo IdP</title><link rel="stylesheet" href="/login.css"></head>
<body><main>
<h1>moat demo IdP</h1>
<p class="note">A development OpenID Provider. Sign in as <kbd>{{.Username}}</kbd> with password <kbd>{{.Password}}</kbd>.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="authRequestID" value="{{.ID}}">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main></body></html>
`))

func (p *Provider) renderLogin(w http.ResponseWriter, status int, id, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Browsers apply form-action to every redirect that follows the form
	// post: to the client's redirect URI, and from there to wherever the
	// client lands after login (its landing pages, the same origins as its
	// post-logout redirects).
	clients := origins(append(slices.Clone(p.cfg.RedirectURIs), p.cfg.PostLogoutRedirectURIs...))
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' "+strings.Join(clients, " "))
	w.WriteHeader(status)
	loginTemplate.Execute(w, struct{ ID, Error, Username, Password string }{id, msg, DemoUser.Username, DemoUser.Password})
}

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	p.renderLogin(w, http.StatusOK, r.URL.Query().Get("authRequestID"), "")
}

func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("authRequestID")
	if err := p.store.checkPassword(r.PostFormValue("username"), r.PostFormValue("password"), id); err != nil {
		p.renderLogin(w, http.StatusUnauthorized, id, err.Error())
		return
	}
	ctx := op.ContextWithIssuer(r.Context(), p.cfg.Issuer)
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, id), http.StatusFound)
}

func loginCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Write([]byte(`body{font:16px/1.5 system-ui,sans-serif;background:#f4f1ea;margin:0}
main{max-width:22rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 4px #0002}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin-top:1rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit}
button{margin-top:1.5rem;padding:.5rem 1.5rem;font:inherit;cursor:pointer}
.note{color:#555;font-size:.9rem}.error{color:#b00020}
`))
}

func loggedOut(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("You are signed out of the moat demo IdP.\n"))
}

// origins returns the distinct origins of urls.
func origins(urls []string) []string {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			continue
		}
		if o := u.Scheme + "://" + u.Host; !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

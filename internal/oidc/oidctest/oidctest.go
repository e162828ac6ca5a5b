// Package oidctest is an in-process OpenID Provider for tests. It implements
// discovery, JWKS, an auto-approving authorization endpoint, the token
// endpoint (code with PKCE, refresh with rotation), UserInfo, revocation and
// end-session, DPoP (RFC 9449) when Behavior.DPoP is set, records every
// request, and misbehaves on demand: wrong ID token claims, foreign keys,
// alg none, a wrong iss parameter, failing or slow refreshes, tokens not
// bound to the DPoP key.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-bff/moat/internal/dpop/dpopverify"
)

// Behavior is what the provider does. Tests change it with Provider.Set.
type Behavior struct {
	// AccessTokenTTL is the expires_in of access tokens; 0 omits it.
	AccessTokenTTL time.Duration
	// RotateRefreshTokens issues a new refresh token on every refresh and
	// revokes the whole grant when a spent one is presented again.
	RotateRefreshTokens bool
	// AdvertiseIss sets authorization_response_iss_parameter_supported.
	AdvertiseIss bool
	// IssParam overrides the iss parameter of the authorization response;
	// OmitIss leaves it out.
	IssParam string
	OmitIss  bool
	// MutateIDToken edits ID token claims before signing.
	MutateIDToken func(claims map[string]any)
	// Sign overrides how ID tokens are signed, e.g. with SignNone or a
	// foreign key; nil signs with the provider's current key.
	Sign func(claims map[string]any) string
	// TokenDelay delays every token endpoint answer.
	TokenDelay time.Duration
	// RefreshError makes refresh_token grants fail: "invalid_grant" answers
	// 400 invalid_grant; "server_error" answers 500; "hang" blocks until the
	// client gives up.
	RefreshError string
	// RefreshErrorStatus, if set, answers refresh_token grants with that
	// status and {"error": RefreshErrorCode} as JSON, or, when
	// RefreshErrorCode is empty, with RefreshErrorBody as text/html.
	RefreshErrorStatus int
	RefreshErrorCode   string
	RefreshErrorBody   string
	// UserInfoSub overrides the sub the UserInfo endpoint returns.
	UserInfoSub string
	// UserInfoStatus, if set, is the UserInfo endpoint's answer: 401
	// invalid_token, 403 insufficient_scope (RFC 6750 §3.1), or that status.
	UserInfoStatus int
	// NoEndSession and NoRevocation leave those endpoints out of discovery.
	NoEndSession, NoRevocation bool
	// RevokeStatus, if set, is the revocation endpoint's answer (e.g. 503).
	RevokeStatus int
	// ConsentForm makes the authorization endpoint answer with a page whose
	// script submits a form back to it, as a login or consent page does: the
	// redirect to the client then follows a navigation started by the
	// provider's site, so a browser withholds SameSite=Strict cookies.
	ConsentForm bool
	// AuthorizeError, if set, is returned as the authorization response's
	// error (e.g. login_required) instead of a code.
	AuthorizeError string
	// RefreshExpiresIn adds refresh_expires_in to token responses.
	RefreshExpiresIn time.Duration
	// TokenScope, if set, is the scope of code and refresh token responses
	// (RFC 6749 §5.1), as an IdP states what it granted; unset omits it.
	TokenScope *string
	// MutateDiscovery, if set, edits the discovery document before it is
	// served (a provider that lacks a capability).
	MutateDiscovery func(doc map[string]any)
	// PAR advertises a pushed authorization request endpoint (RFC 9126);
	// RequirePAR also sets require_pushed_authorization_requests.
	PAR, RequirePAR bool
	// TokenStatus, if set, is the token endpoint's status for every grant.
	TokenStatus int
	// ForgetResources drops the RFC 8707 resources of authorization
	// requests, so that a refresh naming one is refused (invalid_target).
	ForgetResources bool
	// ExchangeTargets are the audiences and resources the token-exchange
	// grant (RFC 8693) issues tokens for; any other is invalid_target.
	ExchangeTargets []string
	// ExchangeStatus, if set, answers every token exchange with that status
	// and ExchangeError as its error code (server_error when empty).
	ExchangeStatus int
	ExchangeError  string
	// ExchangeTokenType, if set, replaces the exchange response's
	// issued_token_type and token_type ("N_A" for both, or a URN with
	// token_type Bearer).
	ExchangeTokenType string
	// JWKSPadding pads the JWKS document with that many bytes.
	JWKSPadding int
	// RequestObjectAlgs, if set, is the discovery document's
	// request_object_signing_alg_values_supported instead of ES256, PS256
	// and EdDSA (advertised once RequireRequestObjects is called).
	RequestObjectAlgs []string
	// Garbage names an endpoint path ("/token", "/jwks", "/userinfo", …)
	// that answers 200 with broken JSON.
	Garbage string
	// DPoP makes the provider speak RFC 9449: advertise
	// dpop_signing_alg_values_supported, verify proofs at the token, PAR
	// and UserInfo endpoints, and bind tokens. Without it DPoP headers are
	// ignored, as by a provider that does not know DPoP, and the other
	// DPoP knobs do nothing.
	DPoP bool
	// DPoPRequired refuses token and PAR requests without a DPoP proof
	// (invalid_dpop_proof); DPoPRequireNonce refuses proofs without the
	// provider's nonce (use_dpop_nonce with DPoP-Nonce, RFC 9449 §8).
	DPoPRequired, DPoPRequireNonce bool
	// DPoPDowngrade answers a token request with a proof with an unbound
	// token_type Bearer token; DPoPDropCnf says token_type DPoP but leaves
	// cnf out of the access token. Both are what a client must not accept
	// or a resource server must refuse (RFC 9449 §5, §7.1).
	DPoPDowngrade, DPoPDropCnf bool
}

// Request is one request the provider received.
type Request struct {
	Method, Path string
	Form         url.Values
	// ClientAuth is "client_secret_basic", "client_secret_post",
	// "private_key_jwt" or "".
	ClientAuth string
	// MTLS: the request came to an mtls_endpoint_aliases endpoint (its Path
	// is the plain endpoint's).
	MTLS bool
	// DPoP is the request's DPoP header (RFC 9449 §4.1), if any.
	DPoP string
}

// User is an account at the provider.
type User struct {
	Subject string
	Claims  map[string]any
}

type grant struct {
	user          User
	nonce         string
	challenge     string
	redirectURI   string
	sid           string
	authTime      time.Time
	scope         string   // asked for with client_credentials
	resources     []string // RFC 8707 resources named at authorization
	refreshTokens []string // issued, newest last
	revoked       bool
	certThumb     string // RFC 8705 §3: x5t#S256 of the client certificate its tokens are bound to
	dpopJKT       string // RFC 9449 §10: the key the authorization code is bound to
}

// Provider is a running fake OpenID Provider.
type Provider struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURI  string

	srv *httptest.Server

	mu       sync.Mutex
	behavior Behavior
	keys     []*jose.JSONWebKey // signing keys, current last
	users    map[string]User
	codes    map[string]*grant
	access   map[string]*grant
	refresh  map[string]*grant
	spentRT  map[string]*grant
	pushed   map[string]url.Values // request_uri → parameters, single use
	issued   []string
	requests []Request

	accessResource map[string]string // access token → its RFC 8707 resource
	accessExchange map[string]Exchanged

	clientKeys *jose.JSONWebKeySet // private_key_jwt: the client's public keys
	seenJTI    map[string]bool
	// AssertionErr is why the last client assertion was refused.
	assertionErr string

	requestKeys   *jose.JSONWebKeySet // JAR: the client's public keys
	requestObjErr string

	accessCert map[string]string // access token → x5t#S256 it is bound to
	tls        bool              // served over https with mtls_endpoint_aliases
	mtls       *clientCert       // RFC 8705 client authentication, when set

	dpop dpopState
}

// UseClientKeys makes the provider accept only private_key_jwt (OIDC Core
// §9, RFC 7523) assertions signed by one of keys, refusing client secrets.
func (p *Provider) UseClientKeys(keys jose.JSONWebKeySet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clientKeys = &keys
	p.seenJTI = map[string]bool{}
}

// AssertionError returns why the provider last refused a client
// assertion, or "".
func (p *Provider) AssertionError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.assertionErr
}

// assertionValid applies RFC 7523 §3: no client secret beside it, the
// jwt-bearer type, the checks every client JWT gets, sub the client, at
// most five minutes of lifetime, and a jti never seen before.
func (p *Provider) assertionValid(r *http.Request, keys *jose.JSONWebKeySet) bool {
	err := p.checkAssertion(r, keys)
	if err != nil {
		p.mu.Lock()
		p.assertionErr = err.Error()
		p.mu.Unlock()
	}
	return err == nil
}

func (p *Provider) checkAssertion(r *http.Request, keys *jose.JSONWebKeySet) error {
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Get("client_secret") != "" {
		return errors.New("a client secret was sent")
	}
	if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return errors.New("client_assertion_type")
	}
	c, err := p.verifyClientJWT(r.PostForm.Get("client_assertion"), keys,
		[]jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.RS256, jose.EdDSA}, "", []string{p.Issuer, p.Issuer + "/token"})
	switch {
	case err != nil:
		return err
	case c.Subject != p.ClientID:
		return fmt.Errorf("sub %q", c.Subject)
	case c.Expiry.Time().After(time.Now().Add(5 * time.Minute)):
		return errors.New("lifetime")
	}
	if id := r.PostForm.Get("client_id"); id != "" && id != p.ClientID {
		return errors.New("client_id")
	}
	return p.spendJTI(c.ID)
}

// New starts a provider for the client with the given redirect URI and
// stops it when the test ends. The default user is "alice".
func New(t testing.TB, redirectURI string) *Provider {
	p := Start(redirectURI)
	t.Cleanup(p.srv.Close)
	return p
}

// Start starts a provider like New, outside a test (load harnesses,
// benchmarks run as programs); the caller stops it with Close.
func Start(redirectURI string) *Provider { return start(redirectURI, false) }

func start(redirectURI string, useTLS bool) *Provider {
	p := &Provider{
		ClientID:       "moat-test",
		ClientSecret:   "test-secret-" + random(24),
		RedirectURI:    redirectURI,
		behavior:       Behavior{AccessTokenTTL: 5 * time.Minute, RotateRefreshTokens: true, AdvertiseIss: true},
		users:          map[string]User{},
		codes:          map[string]*grant{},
		access:         map[string]*grant{},
		refresh:        map[string]*grant{},
		spentRT:        map[string]*grant{},
		pushed:         map[string]url.Values{},
		accessResource: map[string]string{},
		accessExchange: map[string]Exchanged{},
		accessCert:     map[string]string{},
		dpop:           newDPoPState(),
	}
	p.RotateKey()
	p.AddUser(User{Subject: "alice", Claims: map[string]any{
		"name": "Alice Example", "given_name": "Alice", "family_name": "Example",
		"email": "alice@example.com", "email_verified": true, "preferred_username": "alice",
	}})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("POST /revoke", p.revoke)
	mux.HandleFunc("GET /end_session", p.endSession)
	mux.HandleFunc("POST /par", p.par)
	if useTLS {
		p.startTLS(mux)
		return p
	}
	p.srv = httptest.NewServer(p.record(p.garbage(mux)))
	p.Issuer = p.srv.URL
	return p
}

// garbage answers Behavior.Garbage's endpoint with broken JSON.
func (p *Provider) garbage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		g := p.behavior.Garbage
		p.mu.Unlock()
		if g != "" && r.URL.Path == g {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token": "x", "keys": [{`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Set changes the provider's behaviour.
func (p *Provider) Set(f func(*Behavior)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.behavior)
}

// AddUser adds or replaces an account; authorize picks it by login_hint.
func (p *Provider) AddUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[u.Subject] = u
}

// RotateKey adds a new signing key and signs with it from now on; the old
// keys stay in the JWKS.
func (p *Provider) RotateKey() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, &jose.JSONWebKey{Key: key, KeyID: "k" + random(6), Algorithm: "RS256", Use: "sig"})
}

// RotateKeyES256 is RotateKey with an ECDSA P-256 key: ID tokens are
// signed with ES256 from now on, and discovery lists ES256 among
// id_token_signing_alg_values_supported. RSA signing dominates the
// provider's cost per login; benchmarks use this to measure the client.
func (p *Provider) RotateKeyES256() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, &jose.JSONWebKey{Key: key, KeyID: "k" + random(6), Algorithm: "ES256", Use: "sig"})
}

// Close stops the provider early (an outage).
func (p *Provider) Close() { p.srv.CloseClientConnections(); p.srv.Close() }

// Requests returns a copy of every request received so far.
func (p *Provider) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.requests)
}

// Grants counts token requests by grant_type.
func (p *Provider) Grants(grantType string) int {
	n := 0
	for _, r := range p.Requests() {
		if r.Path == "/token" && r.Form.Get("grant_type") == grantType {
			n++
		}
	}
	return n
}

// IssuedTokens returns every access, refresh and ID token issued so far, for
// tests that prove none of them reaches the browser.
func (p *Provider) IssuedTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.issued)
}

func (p *Provider) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		req := Request{Method: r.Method, Path: r.URL.Path, Form: r.Form, DPoP: r.Header.Get("DPoP")}
		if _, _, ok := r.BasicAuth(); ok {
			req.ClientAuth = "client_secret_basic"
		} else if r.PostForm.Get("client_secret") != "" {
			req.ClientAuth = "client_secret_post"
		} else if r.PostForm.Get("client_assertion") != "" {
			req.ClientAuth = "private_key_jwt"
		} else if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && r.Method == http.MethodPost {
			req.ClientAuth = "tls_client_auth"
		}
		if p.tls {
			req.Path = strings.TrimPrefix(req.Path, "/mtls") // MTLS says which
			req.MTLS = strings.HasPrefix(r.URL.Path, "/mtls/")
		}
		p.mu.Lock()
		p.requests = append(p.requests, req)
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	b := p.behavior
	algs := []string{"RS256"}
	for _, k := range p.keys {
		if !slices.Contains(algs, k.Algorithm) {
			algs = append(algs, k.Algorithm)
		}
	}
	p.mu.Unlock()
	doc := map[string]any{
		"issuer":                                         p.Issuer,
		"authorization_endpoint":                         p.Issuer + "/authorize",
		"token_endpoint":                                 p.Issuer + "/token",
		"userinfo_endpoint":                              p.Issuer + "/userinfo",
		"jwks_uri":                                       p.Issuer + "/jwks",
		"response_types_supported":                       []string{"code"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          algs,
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"authorization_response_iss_parameter_supported": b.AdvertiseIss,
		"backchannel_logout_supported":                   true,
		"backchannel_logout_session_supported":           true,
	}
	p.mu.Lock()
	if p.requestKeys != nil || b.RequestObjectAlgs != nil {
		algs := b.RequestObjectAlgs
		if algs == nil {
			algs = []string{"ES256", "PS256", "EdDSA"}
		}
		doc["request_object_signing_alg_values_supported"] = algs
		doc["require_signed_request_object"] = p.requestKeys != nil
	}
	p.mu.Unlock()
	if !b.NoRevocation {
		doc["revocation_endpoint"] = p.Issuer + "/revoke"
	}
	if !b.NoEndSession {
		doc["end_session_endpoint"] = p.Issuer + "/end_session"
	}
	if p.tls {
		aliases := map[string]string{"token_endpoint": p.Issuer + "/mtls/token", "userinfo_endpoint": p.Issuer + "/mtls/userinfo"}
		if !b.NoRevocation {
			aliases["revocation_endpoint"] = p.Issuer + "/mtls/revoke"
		}
		if b.PAR || b.RequirePAR {
			aliases["pushed_authorization_request_endpoint"] = p.Issuer + "/mtls/par"
		}
		doc["mtls_endpoint_aliases"] = aliases
		doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth"}
		doc["tls_client_certificate_bound_access_tokens"] = true
	}
	if b.DPoP {
		doc["dpop_signing_alg_values_supported"] = p.dpop.plain.Algs()
	}
	if b.PAR || b.RequirePAR {
		doc["pushed_authorization_request_endpoint"] = p.Issuer + "/par"
		doc["require_pushed_authorization_requests"] = b.RequirePAR
	}
	if b.MutateDiscovery != nil {
		b.MutateDiscovery(doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	var set jose.JSONWebKeySet
	for _, k := range p.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	padding := p.behavior.JWKSPadding
	p.mu.Unlock()
	if padding > 0 {
		writeJSON(w, http.StatusOK, map[string]any{"keys": set.Keys, "padding": strings.Repeat("x", padding)})
		return
	}
	writeJSON(w, http.StatusOK, set)
}

// par stores a pushed authorization request (RFC 9126 §2) from an
// authenticated client and answers 201 with a one-time request_uri.
func (p *Provider) par(w http.ResponseWriter, r *http.Request) {
	if !p.clientAuthenticated(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	if r.PostForm.Get("request_uri") != "" {
		oauthError(w, http.StatusBadRequest, "invalid_request") // §2.1: not allowed here
		return
	}
	jkt, ok := p.dpopAtPAR(w, r)
	if !ok {
		return
	}
	uri := "urn:ietf:params:oauth:request_uri:" + random(16)
	params := url.Values{}
	for k, v := range r.PostForm {
		if k != "client_secret" {
			params[k] = v
		}
	}
	if p.requestObjectsRequired() || r.PostForm.Has("request") {
		// RFC 9126 §3: with a request object, only client authentication
		// parameters may travel beside it.
		for k := range r.PostForm {
			switch k {
			case "request", "client_id", "client_secret", "client_assertion", "client_assertion_type":
			default:
				p.refuseRequestObject("parameter " + k + " outside the pushed request object")
				oauthError(w, http.StatusBadRequest, "invalid_request")
				return
			}
		}
		var err error
		if params, err = p.verifyRequestObject(r.PostForm.Get("request"), nil); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request_object")
			return
		}
	}
	if jkt != "" {
		params.Set("dpop_jkt", jkt)
	}
	p.mu.Lock()
	p.pushed[uri] = params
	p.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": 60})
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	consent := p.behavior.ConsentForm
	p.mu.Unlock()
	if r.Method == http.MethodPost {
		q = r.PostForm
	} else if consent {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><form method="post" action="/authorize">`)
		for k, vs := range q {
			for _, v := range vs {
				fmt.Fprintf(w, `<input type="hidden" name="%s" value="%s">`, html.EscapeString(k), html.EscapeString(v))
			}
		}
		io.WriteString(w, `<button>Continue</button></form><script>document.forms[0].submit()</script>`)
		return
	}
	p.mu.Lock()
	requirePAR := p.behavior.RequirePAR
	pushed, ok := p.pushed[q.Get("request_uri")]
	delete(p.pushed, q.Get("request_uri")) // §4: each request_uri once
	p.mu.Unlock()
	switch {
	case q.Get("request_uri") != "" && (!ok || pushed.Get("client_id") != q.Get("client_id")):
		http.Error(w, "unknown or used request_uri", http.StatusBadRequest)
		return
	case ok:
		q = pushed
	case requirePAR:
		http.Error(w, "pushed authorization request required", http.StatusBadRequest)
		return
	case p.requestObjectsRequired() || q.Has("request"):
		params, err := p.verifyRequestObject(q.Get("request"), q)
		if err != nil {
			http.Error(w, "invalid_request_object", http.StatusBadRequest)
			return
		}
		q = params
	}
	if q.Get("client_id") != p.ClientID || q.Get("redirect_uri") != p.RedirectURI {
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	}
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "code flow with PKCE S256 required", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	b := p.behavior
	sub := q.Get("login_hint")
	if sub == "" {
		sub = "alice"
	}
	user, ok := p.users[sub]
	code := "code-" + random(16)
	if ok {
		p.codes[code] = &grant{user: user, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"),
			redirectURI: q.Get("redirect_uri"), sid: "sid-" + random(8), authTime: time.Now(), resources: q["resource"],
			dpopJKT: q.Get("dpop_jkt")}
		if p.behavior.ForgetResources {
			p.codes[code].resources = nil
		}
		if !b.DPoP {
			p.codes[code].dpopJKT = "" // unknown to a provider without DPoP
		}
	}
	p.mu.Unlock()
	if !ok {
		http.Error(w, "unknown user", http.StatusBadRequest)
		return
	}
	resp := url.Values{"code": {code}, "state": {q.Get("state")}}
	if b.AuthorizeError != "" {
		resp = url.Values{"error": {b.AuthorizeError}, "error_description": {"<b>the user is not logged in</b>"}, "state": {q.Get("state")}}
	}
	if !b.OmitIss {
		resp.Set("iss", p.Issuer)
		if b.IssParam != "" {
			resp.Set("iss", b.IssParam)
		}
	}
	http.Redirect(w, r, p.RedirectURI+"?"+resp.Encode(), http.StatusFound)
}

func (p *Provider) clientAuthenticated(r *http.Request) bool {
	p.mu.Lock()
	keys, mtls := p.clientKeys, p.mtls
	p.mu.Unlock()
	if mtls != nil {
		return p.certValid(r, mtls)
	}
	if keys != nil {
		return p.assertionValid(r, keys)
	}
	if id, sec, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(id)
		sec, _ = url.QueryUnescape(sec)
		return id == p.ClientID && sec == p.ClientSecret
	}
	return r.PostForm.Get("client_id") == p.ClientID && r.PostForm.Get("client_secret") == p.ClientSecret
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	b := p.behavior
	p.mu.Unlock()
	if b.TokenDelay > 0 {
		select {
		case <-time.After(b.TokenDelay):
		case <-r.Context().Done():
			return
		}
	}
	if !p.clientAuthenticated(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	if b.TokenStatus != 0 {
		oauthError(w, b.TokenStatus, "server_error")
		return
	}
	proof, err := p.verifyDPoP(r, "")
	if err != nil {
		dpopverify.WriteToken(w, err)
		return
	}
	jkt := ""
	if proof != nil {
		jkt = proof.JKT
	}
	if b.DPoP && b.DPoPRequireNonce {
		w.Header().Set("DPoP-Nonce", p.dpop.nonces.Current()) // §8.2
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.mu.Lock()
		g := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code")) // single use
		p.mu.Unlock()
		if g == nil || g.redirectURI != r.PostForm.Get("redirect_uri") || s256(r.PostForm.Get("code_verifier")) != g.challenge {
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		if g.dpopJKT != "" && g.dpopJKT != jkt { // RFC 9449 §10: the code is bound to the key
			p.dpopRefused(errors.New("code bound to another DPoP key"), nil)
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		p.bindCert(r, g)
		p.issue(w, g, true, jkt)
	case "refresh_token":
		if b.RefreshErrorStatus != 0 {
			if b.RefreshErrorCode != "" {
				oauthError(w, b.RefreshErrorStatus, b.RefreshErrorCode)
				return
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(b.RefreshErrorStatus)
			io.WriteString(w, b.RefreshErrorBody)
			return
		}
		switch b.RefreshError {
		case "invalid_grant":
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		case "server_error":
			oauthError(w, http.StatusInternalServerError, "server_error")
			return
		case "hang":
			<-r.Context().Done()
			return
		}
		rt := r.PostForm.Get("refresh_token")
		p.mu.Lock()
		g := p.refresh[rt]
		if spent := p.spentRT[rt]; spent != nil {
			spent.revoked = true // RFC 9700 §4.14.2: reuse of a rotated token kills the grant
		}
		if g != nil && b.RotateRefreshTokens {
			delete(p.refresh, rt)
			p.spentRT[rt] = g
		}
		p.mu.Unlock()
		if g == nil || g.revoked {
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		p.bindCert(r, g)
		if res := r.PostForm.Get("resource"); res != "" {
			if !slices.Contains(g.resources, res) { // RFC 8707 §2.2: only what the grant named
				oauthError(w, http.StatusBadRequest, "invalid_target")
				return
			}
			p.issueFor(w, g, b.RotateRefreshTokens, res, jkt)
			return
		}
		// §5: a confidential client's refresh token is not bound; the new
		// access token is bound to this proof's key.
		p.issue(w, g, b.RotateRefreshTokens, jkt)
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		p.tokenExchange(w, r, b)
	case "client_credentials":
		// RFC 6749 §4.4: a token for the client itself, whose subject is
		// its client_id (RFC 9068 §2.2); no refresh or ID token (§4.4.3).
		at := "at-" + random(24)
		p.mu.Lock()
		p.access[at] = &grant{user: User{Subject: p.ClientID}, scope: r.PostForm.Get("scope")}
		p.mu.Unlock()
		resp := map[string]any{"access_token": at, "token_type": "Bearer"}
		if b.AccessTokenTTL > 0 {
			resp["expires_in"] = int(b.AccessTokenTTL.Seconds())
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(resp)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

func (p *Provider) issue(w http.ResponseWriter, g *grant, newRT bool, jkt string) {
	p.issueFor(w, g, newRT, "", jkt)
}

// issueFor answers a token request; a resource restricts the access token
// to it (RFC 8707), a DPoP key's thumbprint jkt binds it (RFC 9449 §5).
func (p *Provider) issueFor(w http.ResponseWriter, g *grant, newRT bool, resource, jkt string) {
	p.mu.Lock()
	b := p.behavior
	at, tokenType := "at-"+random(24), "Bearer"
	if jkt != "" && !b.DPoPDowngrade {
		at, tokenType = p.dpopAccessToken(g, jkt, b), "DPoP"
		if !b.DPoPDropCnf {
			p.dpop.accessJKT[at] = jkt
		}
	}
	p.access[at] = g
	if g.certThumb != "" {
		p.accessCert[at] = g.certThumb
	}
	if resource != "" {
		p.accessResource[at] = resource
	}
	resp := map[string]any{"access_token": at, "token_type": tokenType}
	if b.AccessTokenTTL > 0 {
		resp["expires_in"] = int(b.AccessTokenTTL.Seconds())
	}
	if b.RefreshExpiresIn > 0 {
		resp["refresh_expires_in"] = int(b.RefreshExpiresIn.Seconds())
	}
	if b.TokenScope != nil {
		resp["scope"] = *b.TokenScope
	}
	if newRT {
		rt := "rt-" + random(24)
		p.refresh[rt] = g
		g.refreshTokens = append(g.refreshTokens, rt)
		resp["refresh_token"] = rt
		p.issued = append(p.issued, rt)
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.Issuer, "sub": g.user.Subject, "aud": p.ClientID,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"auth_time": g.authTime.Unix(), "sid": g.sid, "at_hash": atHash(at),
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	for k, v := range g.user.Claims {
		claims[k] = v
	}
	p.mu.Unlock()
	if b.MutateIDToken != nil {
		b.MutateIDToken(claims)
	}
	sign := b.Sign
	if sign == nil {
		sign = p.SignWithCurrentKey
	}
	idt := sign(claims)
	resp["id_token"] = idt
	p.mu.Lock()
	p.issued = append(p.issued, at, idt)
	p.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) grantFor(r *http.Request) *grant {
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.access[at]
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	status := p.behavior.UserInfoStatus
	p.mu.Unlock()
	switch status {
	case 0:
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, status, "invalid_token")
		return
	case http.StatusForbidden:
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		oauthError(w, status, "insufficient_scope")
		return
	default:
		w.WriteHeader(status)
		return
	}
	g := p.grantFor(r)
	p.mu.Lock()
	dpopOn := p.behavior.DPoP
	p.mu.Unlock()
	if scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); dpopOn && (g != nil || strings.EqualFold(scheme, "DPoP")) {
		var ok bool
		if g, ok = p.userinfoGrant(w, r); !ok {
			return
		}
	}
	if g == nil || g.revoked {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token")
		return
	}
	p.mu.Lock()
	sub := g.user.Subject
	if p.behavior.UserInfoSub != "" {
		sub = p.behavior.UserInfoSub
	}
	p.mu.Unlock()
	claims := map[string]any{"sub": sub}
	for k, v := range g.user.Claims {
		claims[k] = v
	}
	writeJSON(w, http.StatusOK, claims)
}

// AccessTokenScope returns the scope a client-credentials token was asked
// for, and whether at is a live access token.
func (p *Provider) AccessTokenScope(at string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.access[at]
	if g == nil || g.revoked {
		return "", false
	}
	return g.scope, true
}

// AccessTokenResource returns the RFC 8707 resource an access token is
// restricted to ("" for the session's own), and whether it is live.
func (p *Provider) AccessTokenResource(at string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.access[at]
	if g == nil || g.revoked {
		return "", false
	}
	return p.accessResource[at], true
}

// ValidAccessToken reports whether at was issued and its grant is live; a
// test upstream uses it to check the Bearer token it received.
func (p *Provider) ValidAccessToken(at string) (sub string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.access[at]
	if g == nil || g.revoked {
		return "", false
	}
	return g.user.Subject, true
}

func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	status := p.behavior.RevokeStatus
	p.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if !p.clientAuthenticated(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	tok := r.PostForm.Get("token")
	p.mu.Lock()
	if g := p.refresh[tok]; g != nil {
		g.revoked = true
	}
	if g := p.access[tok]; g != nil {
		g.revoked = true
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK) // RFC 7009 §2.2: 200 even for unknown tokens
}

func (p *Provider) endSession(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target := q.Get("post_logout_redirect_uri")
	if target == "" {
		fmt.Fprintln(w, "logged out")
		return
	}
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, "bad post_logout_redirect_uri", http.StatusBadRequest)
		return
	}
	if st := q.Get("state"); st != "" {
		v := u.Query()
		v.Set("state", st)
		u.RawQuery = v.Encode()
	}
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// SignWithCurrentKey signs claims as a JWT with the provider's current key.
func (p *Provider) SignWithCurrentKey(claims map[string]any) string {
	return p.SignTyped("JWT", claims)
}

// SignTyped signs claims with the provider's current key and typ.
func (p *Provider) SignTyped(typ string, claims map[string]any) string {
	p.mu.Lock()
	k := p.keys[len(p.keys)-1]
	p.mu.Unlock()
	return SignWith(k, typ, claims)
}

// SignWith signs claims with key (with its Algorithm, RS256 when unset),
// setting typ and the key's kid.
func SignWith(key *jose.JSONWebKey, typ string, claims map[string]any) string {
	alg := jose.SignatureAlgorithm(key.Algorithm)
	if alg == "" {
		alg = jose.RS256
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", key.KeyID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key.Key}, opts)
	if err != nil {
		panic(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return raw
}

// NewKey returns a fresh RSA signing key that no provider publishes.
func NewKey(kid string) *jose.JSONWebKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return &jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: "RS256", Use: "sig"}
}

// CurrentKeyID returns the kid the provider signs with.
func (p *Provider) CurrentKeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[len(p.keys)-1].KeyID
}

// SignNone returns an unsigned JWT (alg none), which a client must reject.
func SignNone(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return b64(h) + "." + b64(c) + "."
}

// SignHS256 signs claims with an HMAC key, as an attacker who knows the
// client secret could; a client expecting RS256 must reject it.
func SignHS256(secret string, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return raw
}

func atHash(at string) string {
	sum := sha256.Sum256([]byte(at))
	return b64(sum[:16])
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return b64(b)
}

func oauthError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// LogoutToken returns a back-channel logout token (Back-Channel Logout 1.0
// §2.4) for sub and sid, signed with the current key and typ logout+jwt;
// mutate edits the claims first. Set typ to "" via SignLogoutWith for
// other headers.
func (p *Provider) LogoutToken(sub, sid string, mutate func(claims map[string]any)) string {
	now := time.Now()
	claims := map[string]any{
		"iss": p.Issuer, "aud": p.ClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti":    "jti-" + random(12),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	if sub != "" {
		claims["sub"] = sub
	}
	if sid != "" {
		claims["sid"] = sid
	}
	if mutate != nil {
		mutate(claims)
	}
	p.mu.Lock()
	k := p.keys[len(p.keys)-1]
	p.mu.Unlock()
	return SignWith(k, "logout+jwt", claims)
}

// SessionID returns the sid the provider put in the ID tokens of sub's
// most recent login.
func (p *Provider) SessionID(sub string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *grant
	for _, g := range p.access {
		if g.user.Subject == sub && (best == nil || g.authTime.After(best.authTime)) {
			best = g
		}
	}
	if best == nil {
		return ""
	}
	return best.sid
}

// Exchanged is what a token-exchange grant (RFC 8693) issued an access
// token for.
type Exchanged struct {
	Audience, Resource, Scope string
	// Subject is the access token that was exchanged.
	Subject string
}

// tokenExchange implements RFC 8693 §2 for access tokens: the subject token
// must be a live access token of a grant, the target one the provider
// knows; the new token belongs to the same grant and records its target.
func (p *Provider) tokenExchange(w http.ResponseWriter, r *http.Request, b Behavior) {
	f := r.PostForm
	if b.ExchangeStatus != 0 {
		code := b.ExchangeError
		if code == "" {
			code = "server_error"
		}
		oauthError(w, b.ExchangeStatus, code)
		return
	}
	if f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token" ||
		(f.Get("requested_token_type") != "" && f.Get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token") {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	aud, res := f.Get("audience"), f.Get("resource")
	if aud == "" && res == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	for _, t := range []string{aud, res} {
		if t != "" && !slices.Contains(b.ExchangeTargets, t) {
			oauthError(w, http.StatusBadRequest, "invalid_target") // §2.2.2
			return
		}
	}
	subject := f.Get("subject_token")
	p.mu.Lock()
	g := p.access[subject]
	if g == nil || g.revoked || g.user.Subject == p.ClientID {
		p.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant") // §2.2.2: an invalid subject_token
		return
	}
	at := "at-" + random(24)
	p.access[at] = g
	p.accessExchange[at] = Exchanged{Audience: aud, Resource: res, Scope: f.Get("scope"), Subject: subject}
	p.issued = append(p.issued, at)
	p.mu.Unlock()
	resp := map[string]any{"access_token": at, "token_type": "Bearer",
		"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}
	if t := b.ExchangeTokenType; t != "" {
		resp["issued_token_type"] = t
		if t == "N_A" {
			resp["token_type"] = "N_A"
		}
	}
	if b.AccessTokenTTL > 0 {
		resp["expires_in"] = int(b.AccessTokenTTL.Seconds())
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

// ExchangedToken returns what the token-exchange grant issued at for, and
// whether at is a live exchanged token.
func (p *Provider) ExchangedToken(at string) (Exchanged, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, x := p.access[at], p.accessExchange[at]
	if g == nil || g.revoked || x == (Exchanged{}) {
		return Exchanged{}, false
	}
	return x, true
}

// ForgetAccessToken makes at unknown, as an access token revoked on its
// own: the grant and its refresh tokens live on.
func (p *Provider) ForgetAccessToken(at string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.access, at)
}

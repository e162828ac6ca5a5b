package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/pending"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/session"
	"golang.org/x/oauth2"
)

// loginCookie binds login transactions to the browser that started them
// (RFC 9700 §2.1, §4.7.1). It is SameSite=Lax because the callback arrives
// as a cross-site navigation from the IdP, which would not carry a Strict
// cookie; one value serves every tab, so parallel logins do not clobber
// each other.
const loginCookie = "__Host-moat-login"

// loginTx is one login in flight, stored sealed under the hash of its state
// and consumed by the callback exactly once.
type loginTx struct {
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	ReturnTo string    `json:"r"`
	Binding  string    `json:"b"` // hash of the login cookie
	Issuer   string    `json:"i"` // the issuer the request went to (RFC 9700 §4.4.2)
	Created  time.Time `json:"c"`
	MaxAge   *int      `json:"m,omitempty"`
	ACR      []string  `json:"a,omitempty"`
	// Old is the store key (a hash, not the cookie's ID) of the session
	// this browser held at /auth/login. The callback ends it: the session
	// cookie is SameSite=Strict, so the IdP's cross-site redirect to the
	// callback does not carry it.
	Old session.Key `json:"o,omitempty"`
	// DPoP is the new session's DPoP key (oidc.dpop), made here because
	// the authorization request names it (dpop_jkt, a PAR proof) and the
	// code exchange must prove it (RFC 9449 §10); the session keeps it.
	DPoP []byte `json:"d,omitempty"`
}

func (s *Server) loginKey(state string) session.Key { return s.key("login", []byte(state)) }

func bindingHash(v string) string { return string(session.KeyOf("binding", []byte(v))) }

// login starts the authorization code flow with PKCE S256, state and nonce,
// all fresh (BBA §6.1.2.1, RFC 9700 §2.1.1).
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if err := s.loginLimit(w, r); err != nil {
		return err
	}
	returnTo := s.returnTo(r.URL.Query().Get("returnTo"))
	extra, maxAge, acr, err := s.reauthParams(r.URL.Query())
	if err != nil {
		return navError(http.StatusBadRequest, "This sign-in request has invalid parameters.", err)
	}
	binding := ""
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 43 {
		binding = c.Value
	} else {
		binding = randomString()
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	var dpopKey *dpop.Key
	var keyBytes []byte
	if s.cfg.OIDC.DPoP {
		if dpopKey, err = dpop.NewKey(); err == nil {
			keyBytes, err = dpopKey.MarshalBinary()
		}
		if err != nil {
			return err
		}
	}
	authURL, err := s.idp.AuthCodeURL(r.Context(), oidc.AuthRequest{State: state, Nonce: nonce, Verifier: verifier, Extra: extra, DPoP: dpopKey})
	if err != nil {
		return navError(http.StatusServiceUnavailable, "The sign-in service is unavailable. Please try again in a moment.", err)
	}
	tx := loginTx{Nonce: nonce, Verifier: verifier, ReturnTo: returnTo, Binding: bindingHash(binding),
		Issuer: s.cfg.OIDC.Issuer, Created: s.sessions.Now(), MaxAge: maxAge, ACR: acr, DPoP: keyBytes}
	if old, err := s.sessions.Load(r.Context(), r); err == nil {
		tx.Old = old.Key
	}
	key := s.loginKey(state)
	data, err := s.sessions.Seal(key, tx)
	if err != nil {
		return err
	}
	if err := s.pending.Admit(r.Context(), key); errors.Is(err, pending.ErrFull) {
		w.Header().Set("Retry-After", "10")
		return &navErr{http.StatusServiceUnavailable, "Too many sign-ins are in progress. Please try again in a moment.", err, "login_busy"}
	} else if err != nil {
		return navError(http.StatusServiceUnavailable, "Sign-in is unavailable. Please try again in a moment.", err)
	}
	ttl := s.cfg.Session.LoginTimeout.D()
	if _, err := s.sessions.Store().Set(r.Context(), key, session.Record{Data: data}, ttl); err != nil {
		s.pending.Done(key)
		return navError(http.StatusServiceUnavailable, "Sign-in is unavailable. Please try again in a moment.", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: loginCookie, Value: binding, Path: "/", MaxAge: int(ttl.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	s.metrics.LoginStarted()
	redirect(w, authURL)
	return nil
}

// callback finishes the login: it consumes the transaction named by state,
// checks it belongs to this browser, checks the RFC 9207 iss parameter, and
// only then redeems the code. Any failure creates no session.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) error {
	if err := s.loginLimit(w, r); err != nil {
		return err
	}
	reason, err := s.finishLogin(w, r)
	if reason != "" {
		s.metrics.LoginFailed(reason)
		// Every failed callback is an audit event: a state or binding
		// failure can be a forged callback, an issuer mismatch a mix-up
		// attack (RFC 9207), rejected tokens an injection attempt.
		detail := err
		if detail == nil {
			detail = info(r).err
		}
		s.log.Warn("login failed", "audit", true, "event", "login_failed", "reason", reason, "client_ip", info(r).ip, "error", detail)
	}
	return err
}

// finishLogin is the callback proper; a failure comes with its reason for
// moat_logins_failed_total (state, binding, issuer, idp_error, rejected,
// unavailable).
func (s *Server) finishLogin(w http.ResponseWriter, r *http.Request) (string, error) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		return "state", navError(http.StatusBadRequest, "This sign-in link is incomplete. Please sign in again.", errors.New("callback without state"))
	}
	rec, err := s.sessions.Store().Take(r.Context(), s.loginKey(state))
	if errors.Is(err, session.ErrNotFound) {
		// Unknown, expired or already used: the back button, a reload, or a
		// forged request. A browser that is logged in goes home; others
		// start over.
		if _, err := s.sessions.Load(r.Context(), r); err == nil {
			redirect(w, s.landing)
			return "", nil
		}
		return "state", navError(http.StatusBadRequest, "This sign-in has expired or was already completed. Please sign in again.", errors.New("unknown or used state"))
	}
	if err != nil {
		return "unavailable", navError(http.StatusServiceUnavailable, "Sign-in is unavailable. Please try again in a moment.", err)
	}
	s.pending.Done(s.loginKey(state))
	var tx loginTx
	if err := s.sessions.Open(s.loginKey(state), rec.Data, &tx); err != nil {
		return "state", navError(http.StatusBadRequest, "This sign-in cannot be completed. Please sign in again.", err)
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(bindingHash(c.Value)), []byte(tx.Binding)) != 1 {
		return "binding", navError(http.StatusBadRequest, "This sign-in was started in another browser. Please sign in again.", errors.New("login transaction not bound to this browser"))
	}
	if err := s.idp.CheckIssuer(r.Context(), q); err != nil {
		return "issuer", navError(http.StatusBadRequest, "The sign-in response came from an unexpected issuer.", err)
	}
	if e := q.Get("error"); e != "" {
		// A genuine answer to this browser's request (state and binding
		// passed): the SPA learns the code, e.g. login_required after
		// prompt=none, on its returnTo page. error_description is the
		// IdP's text and goes to the log only.
		noteError(r, errors.New("authorization error "+errorCode(e)+": "+q.Get("error_description")))
		redirect(w, withParam(tx.ReturnTo, "login_error", errorCode(e)))
		return "idp_error", nil
	}
	code := q.Get("code")
	if code == "" {
		return "state", navError(http.StatusBadRequest, "This sign-in link is incomplete. Please sign in again.", errors.New("callback without code"))
	}
	var key *dpop.Key
	if len(tx.DPoP) > 0 {
		if key, err = dpop.ParseKey(tx.DPoP); err != nil {
			return "state", navError(http.StatusBadRequest, "This sign-in cannot be completed. Please sign in again.", err)
		}
	}
	tok, id, err := s.idp.Exchange(r.Context(), code, oidc.Expect{Verifier: tx.Verifier, Nonce: tx.Nonce, MaxAge: tx.MaxAge, ACRValues: tx.ACR, DPoP: key})
	switch {
	case errors.Is(err, oidc.ErrUnavailable):
		return "unavailable", navError(http.StatusServiceUnavailable, "The sign-in service is unavailable. Please try again in a moment.", err)
	case err != nil:
		return "rejected", navError(http.StatusBadRequest, "Sign-in could not be verified. Please sign in again.", err)
	}

	// A session from before this login is ended, not reused (fixation),
	// whether the callback carries its cookie or only the transaction
	// names it.
	replaced := []session.Key{tx.Old}
	if old, err := s.sessions.Load(r.Context(), r); err == nil && old.Key != tx.Old {
		replaced = append(replaced, old.Key)
	}
	s.endReplaced(r, replaced)
	now := s.sessions.Now()
	var end time.Time // the session may not outlive its refresh token
	if tok.RefreshExpiresIn > 0 {
		end = now.Add(tok.RefreshExpiresIn)
	}
	l, err := s.sessions.Create(r.Context(), w, session.Session{
		ExpiresAt: end,
		Issuer:    id.Issuer, Subject: id.Subject, SID: id.SID, Claims: oidc.MarshalClaims(id.Claims),
		Tokens: session.Tokens{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken,
			IDToken: tok.IDToken, Expiry: tok.Expiry, Obtained: now, Scope: tok.Scope},
		UserAgent: truncate(r.UserAgent(), 256), RemoteIP: info(r).ip,
		DPoP: tx.DPoP,
	})
	if err != nil {
		return "unavailable", navError(http.StatusServiceUnavailable, "Sign-in is unavailable. Please try again in a moment.", err)
	}
	info(r).session, info(r).sub = l.Key, l.Subject
	s.metrics.LoginCompleted()
	s.log.Info("login", "audit", true, "event", "login", "sub", l.Subject, "session", l.Key.Short())
	redirect(w, tx.ReturnTo)
	return "", nil
}

// endReplaced ends the sessions a new login replaces and revokes their
// refresh tokens, as a logout would.
func (s *Server) endReplaced(r *http.Request, keys []session.Key) {
	for _, key := range keys {
		if key == "" {
			continue
		}
		old, err := s.sessions.LoadKey(r.Context(), key)
		if err != nil {
			continue // already gone, or the store is down: it ends by its timeouts
		}
		if err := s.sessions.Delete(r.Context(), nil, key); err != nil {
			s.log.Warn("ending the session a new login replaces", "session", key.Short(), "error", err)
			continue
		}
		s.log.Info("session ended", "audit", true, "event", "session_ended", "reason", "replaced by a new login",
			"session", key.Short(), "sub", old.Subject)
		s.revoker.Add(revoke.Job{Token: old.Tokens.RefreshToken, Subject: old.Subject, Session: key.Short()})
	}
}

// returnTo validates where the browser may be sent after login (RFC 9700
// §4.11.1: no open redirector). It accepts a local path, or an absolute URL
// on the frontend_url origin; anything else yields the landing page.
// Local paths resolve against the frontend origin when there is one.
func (s *Server) returnTo(raw string) string {
	target, ok := SafeReturnTo(raw, s.frontend)
	if !ok {
		return s.landing
	}
	return target
}

// SafeReturnTo reports whether raw is a safe post-login target and returns
// it in canonical form. frontend may be nil.
func SafeReturnTo(raw string, frontend *url.URL) (string, bool) {
	if raw == "" || len(raw) > 2048 || strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "", false
	}
	// Browsers treat "//host" and "/\host" as other hosts, and some decode
	// before they look: refuse both forms, plain and percent-encoded.
	if decoded, err := url.PathUnescape(raw); err != nil || strings.HasPrefix(decoded, "//") || strings.Contains(decoded, "\\") {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil {
		return "", false
	}
	if u.Scheme == "" && u.Host == "" {
		if !strings.HasPrefix(raw, "/") {
			return "", false
		}
		if frontend != nil {
			base := *frontend
			base.Path, base.RawPath, base.RawQuery, base.Fragment = "", "", "", ""
			return base.String() + u.String(), true
		}
		return u.String(), true
	}
	if frontend == nil || u.Scheme != frontend.Scheme || u.Host != frontend.Host {
		return "", false
	}
	return u.String(), true
}

// reauthParams reads the re-authentication parameters an SPA may pass to
// /auth/login for step-up (OIDC Core §3.1.2.1): prompt (login or none),
// max_age, and acr_values from the configured allow-list.
func (s *Server) reauthParams(q url.Values) (url.Values, *int, []string, error) {
	extra := url.Values{}
	switch p := q.Get("prompt"); p {
	case "":
	case "login", "none":
		extra.Set("prompt", p)
	default:
		return nil, nil, nil, errors.New("prompt must be login or none")
	}
	var maxAge *int
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1<<30 {
			return nil, nil, nil, errors.New("max_age must be a non-negative number of seconds")
		}
		maxAge = &n
		extra.Set("max_age", strconv.Itoa(n))
	}
	var acr []string
	if v := q.Get("acr_values"); v != "" {
		for a := range strings.FieldsSeq(v) {
			if !slices.Contains(s.cfg.OIDC.ACRValues, a) {
				return nil, nil, nil, errors.New("acr_values holds a value that is not in oidc.acr_values")
			}
			acr = append(acr, a)
		}
		extra.Set("acr_values", strings.Join(acr, " "))
	}
	return extra, maxAge, acr, nil
}

// withParam adds one query parameter to a target SafeReturnTo accepted.
func withParam(target, key, value string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// errorCode keeps an RFC 6749 §4.1.2.1 error code only if it is made of the
// characters the RFC allows; anything else is not echoed.
func errorCode(e string) string {
	if len(e) > 64 || strings.ContainsFunc(e, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '_') }) {
		return "unknown_error"
	}
	return e
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// loginLimit bounds logins per client IP: each one stores a transaction
// and reaches the IdP.
func (s *Server) loginLimit(w http.ResponseWriter, r *http.Request) error {
	if ok, wait := s.limits.login.Allow(s.limits.key(info(r).ip)); !ok {
		s.metrics.RateLimited("login")
		w.Header().Set("Retry-After", tooMany(wait).Header.Get("Retry-After"))
		return navError(http.StatusTooManyRequests, "Too many sign-in attempts. Please wait a moment and try again.", errors.New("login rate limit"))
	}
	return nil
}

// navErr is a failure of a top-level navigation (login, callback): the
// browser gets a small HTML page, not JSON.
type navErr struct {
	status int
	msg    string
	err    error
	code   string // when set, a client that does not ask for HTML gets JSON with this error code
}

func (e *navErr) Error() string { return e.msg + ": " + e.err.Error() }
func (e *navErr) Unwrap() error { return e.err }

func navError(status int, msg string, err error) error { return &navErr{status, msg, err, ""} }

var navPage = template.Must(template.New("").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign-in</title></head>
<body><main><h1>Sign-in</h1><p>{{.Msg}}</p><p><a href="{{.Home}}">Continue</a></p></main></body></html>
`))

// nav adapts a navigation handler: failures render the HTML page.
func (s *Server) navHandler(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := f(w, r)
		if err == nil {
			return
		}
		noteError(r, err)
		var ne *navErr
		if !errors.As(err, &ne) {
			ne = &navErr{http.StatusInternalServerError, "Something went wrong. Please try again.", err, ""}
		}
		if ne.code != "" && !strings.Contains(r.Header.Get("Accept"), "text/html") {
			e := httperr.New(ne.status, ne.code, ne.msg, nil)
			httperr.Write(w, e)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(ne.status)
		navPage.Execute(w, struct{ Msg, Home string }{ne.msg, s.landing})
	})
}

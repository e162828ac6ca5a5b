package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/dpop/dpopverify"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

// dpopUpstream is a resource server that takes only DPoP-bound tokens
// (dpopverify.Resource, with nonces) and records every request that
// reaches it, refused or not.
type dpopUpstream struct {
	*httptest.Server
	nonces *dpopverify.Nonces

	mu   sync.Mutex
	seen []dpopSeen
}

type dpopSeen struct {
	method, path, auth, body string
	proofs                   int    // DPoP header lines
	status                   int    // what the resource server answered
	jkt, nonce               string // of the accepted proof
	proof                    string
}

func newDPoPUpstream(t *testing.T, op *oidctest.Provider) *dpopUpstream {
	u := &dpopUpstream{nonces: dpopverify.NewNonces(0, nil)}
	v, err := dpopverify.New(dpopverify.Options{Nonces: u.nonces})
	if err != nil {
		t.Fatal(err)
	}
	rs := &dpopverify.Resource{Verifier: v, Binding: op.DPoPBinding}
	inner := rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := dpopverify.FromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "jkt": p.JKT, "nonce": p.Nonce})
	}))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r)
		s := dpopSeen{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), body: string(body),
			proofs: len(r.Header.Values("DPoP")), status: rec.Code, proof: r.Header.Get("DPoP")}
		if rec.Code == http.StatusOK {
			var out map[string]string
			json.Unmarshal(rec.Body.Bytes(), &out)
			s.jkt, s.nonce = out["jkt"], out["nonce"]
		}
		u.mu.Lock()
		u.seen = append(u.seen, s)
		u.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *dpopUpstream) take() []dpopSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.seen
	u.seen = nil
	return out
}

// newDPoPEnv is moat with oidc.dpop at an OP that requires proofs and
// nonces, with a route /dpop/ to a DPoP resource server, on store.
func newDPoPEnv(t *testing.T, store session.Store, mods ...any) (*env, *dpopUpstream) {
	var rs *dpopUpstream
	e := newEnv(t, append([]any{
		func(p *oidctest.Provider) {
			p.Set(func(b *oidctest.Behavior) { b.DPoP, b.DPoPRequired, b.DPoPRequireNonce = true, true, true })
			rs = newDPoPUpstream(t, p)
		},
		func(c *config.Config) {
			c.OIDC.DPoP = true
			c.Routes = append(c.Routes, config.Route{Prefix: "/dpop/", Upstream: rs.URL + "/v1/"})
		},
		func(o *gateway.Options) { o.Store = store },
	}, mods...)...)
	return e, rs
}

// sessionKey returns the DPoP key sealed in the browser's session.
func (e *env) sessionKey(b *browser) *dpop.Key {
	e.t.Helper()
	id, err := session.ParseID(b.sessionCookie().Value)
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
	if err != nil {
		e.t.Fatal(err)
	}
	if len(l.DPoP) != 32 {
		e.t.Fatalf("the session holds %d bytes of DPoP key, want the 32-byte scalar", len(l.DPoP))
	}
	k, err := l.DPoPKey()
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

// TestDPoPProxy: with oidc.dpop a login binds the session's tokens to its
// own key, and every upstream call carries them as Authorization: DPoP
// with a fresh proof for the upstream URL moat requests (htm, htu, ath);
// the upstream's nonce challenges are answered with one retry when the
// body can be sent again, with 503 dpop_nonce otherwise; the browser
// neither controls a proof nor sees a nonce.
func TestDPoPProxy(t *testing.T) {
	store := memory.New(memory.Options{})
	e, rs := newDPoPEnv(t, store)
	b := e.browser()
	if r := b.login("/"); r.StatusCode != http.StatusFound || b.sessionCookie() == nil {
		t.Fatalf("login: %s %s (provider: %s)", r.Status, r.body, e.op.DPoPError())
	}
	key := e.sessionKey(b)
	at := e.accessToken(b.sessionCookie())
	if jkt := e.op.AccessTokenJKT(at); jkt != key.Thumbprint() {
		t.Fatalf("the session's token is bound to %q, not its key %s", jkt, key.Thumbprint())
	}

	// The first call meets the upstream's nonce: refused once, retried.
	r := b.send(http.MethodGet, "/dpop/items/7?page=2", nil, csrf.HeaderName, csrf.HeaderValue,
		"DPoP", "browser-proof", "Authorization", "Bearer browser-token")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s %s", r.Status, r.body)
	}
	seen := rs.take()
	if len(seen) != 2 || seen[0].status != http.StatusUnauthorized || seen[1].status != http.StatusOK {
		t.Fatalf("upstream saw %+v, want a nonce refusal and the retry", seen)
	}
	v, _ := dpopverify.New(dpopverify.Options{})
	for i, s := range seen {
		if s.auth != "DPoP "+at || s.proofs != 1 {
			t.Errorf("request %d: Authorization %q with %d proofs, want the session's DPoP token and one proof (moat's)", i, s.auth, s.proofs)
		}
		// htu is the upstream URL moat requested, never the browser's.
		p, err := v.Verify([]string{s.proof}, dpopverify.Request{Method: "GET", URL: rs.URL + "/v1/items/7", AccessToken: at})
		if err != nil || p.JKT != key.Thumbprint() {
			t.Errorf("request %d: the proof is not the session key's for GET %s/v1/items/7: %v", i, rs.URL, err)
		}
	}
	if seen[1].nonce != rs.nonces.Current() || seen[1].jkt != key.Thumbprint() {
		t.Errorf("retry: nonce %q jkt %q", seen[1].nonce, seen[1].jkt)
	}
	if h := r.Header.Get("DPoP-Nonce"); h != "" {
		t.Errorf("the browser got the upstream's DPoP-Nonce %q", h)
	}

	// Remembered: the next call needs no retry. A nonce the upstream
	// hands out with a success (RFC 9449 §8.2) is taken up by moat, and
	// the browser does not see it.
	if r := b.api(http.MethodGet, "/dpop/a"); r.StatusCode != http.StatusOK || len(rs.take()) != 1 {
		t.Fatalf("second GET: %s, want one upstream request", r.Status)
	}
	rs.nonces.Rotate() // the one moat holds stays valid as the previous
	r = b.api(http.MethodGet, "/dpop/b")
	if seen := rs.take(); r.StatusCode != http.StatusOK || len(seen) != 1 || r.Header.Get("DPoP-Nonce") != "" {
		t.Fatalf("GET after a rotation: %s, %d upstream requests, browser saw DPoP-Nonce %q", r.Status, len(seen), r.Header.Get("DPoP-Nonce"))
	}
	r = b.api(http.MethodGet, "/dpop/c")
	if seen := rs.take(); r.StatusCode != http.StatusOK || len(seen) != 1 || seen[0].nonce != rs.nonces.Current() {
		t.Fatalf("the nonce of a successful answer was not taken up: %+v", seen)
	}
	// A changed nonce is retried with once, the body sent again whole.
	rs.nonces.Rotate()
	rs.nonces.Rotate()
	r = b.send(http.MethodPost, "/dpop/orders", strings.NewReader(`{"qty":1}`), csrf.HeaderName, csrf.HeaderValue, "Content-Type", "application/json")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("POST: %s %s", r.Status, r.body)
	}
	seen = rs.take()
	if len(seen) != 2 || seen[0].body != `{"qty":1}` || seen[1].body != `{"qty":1}` || seen[1].status != http.StatusOK {
		t.Fatalf("POST reached the upstream as %+v, want the body twice", seen)
	}

	// A body too big to hold is not sent twice: 503, and the nonce is
	// remembered for the browser's retry.
	rs.nonces.Rotate()
	rs.nonces.Rotate()
	big := strings.Repeat("x", 100<<10)
	r = b.send(http.MethodPut, "/dpop/blob", strings.NewReader(big), csrf.HeaderName, csrf.HeaderValue)
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"dpop_nonce"`) {
		t.Fatalf("PUT of a large body after a nonce change: %s %s, want 503 dpop_nonce", r.Status, r.body)
	}
	if n := len(rs.take()); n != 1 {
		t.Fatalf("%d upstream requests, want 1: a streamed body is never replayed", n)
	}
	r = b.send(http.MethodPut, "/dpop/blob", strings.NewReader(big), csrf.HeaderName, csrf.HeaderValue)
	if seen := rs.take(); r.StatusCode != http.StatusOK || len(seen) != 1 || len(seen[0].body) != len(big) {
		t.Fatalf("the retried PUT: %s with %d upstream requests", r.Status, len(seen))
	}

	// Another replica on the same store signs with the same key.
	gw2, err := gateway.New(context.Background(), e.cfg, e.log, gateway.Options{Store: store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw2.Close() })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv2, err := gateway.NewHTTPServer(e.cfg, gw2, e.log)
	if err != nil {
		t.Fatal(err)
	}
	go srv2.Serve(ln)
	t.Cleanup(func() { srv2.Close() })
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/dpop/other", nil)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.sessionCookie().Value})
	r = b.do(req)
	seen = rs.take()
	if r.StatusCode != http.StatusOK || len(seen) == 0 || seen[len(seen)-1].jkt != key.Thumbprint() {
		t.Fatalf("replica 2: %s, upstream %+v, want a proof by the session's key %s", r.Status, seen, key.Thumbprint())
	}

	// A refresh is proven by the same key, and the new token is bound.
	e.expireAccessToken(b.sessionCookie())
	if r := b.api(http.MethodGet, "/dpop/after-refresh"); r.StatusCode != http.StatusOK {
		t.Fatalf("after refresh: %s %s", r.Status, r.body)
	}
	if next := e.accessToken(b.sessionCookie()); next == at || e.op.AccessTokenJKT(next) != key.Thumbprint() {
		t.Fatal("the refreshed token is not bound to the session's key")
	}

	// The private key is in no log line, header or body moat wrote.
	scalar, _ := key.MarshalBinary()
	seal := base64.StdEncoding.EncodeToString(scalar)
	for _, s := range []string{seal, base64.RawURLEncoding.EncodeToString(scalar), fmt.Sprintf("%x", scalar)} {
		if strings.Contains(e.logs.String(), s) || strings.Contains(b.headers.String(), s) || strings.Contains(b.bodies.String(), s) {
			t.Fatal("the session's DPoP private key left moat")
		}
	}
}

// TestDPoPLoginRefusesBearer: an IdP that answers a proven code exchange
// with a Bearer token fails the login; no session is created and the
// token is never used.
func TestDPoPLoginRefusesBearer(t *testing.T) {
	e, rs := newDPoPEnv(t, memory.New(memory.Options{}), func(b *oidctest.Behavior) { b.DPoPDowngrade = true })
	b := e.browser()
	r := b.login("/")
	if r.StatusCode != http.StatusBadRequest || b.sessionCookie() != nil {
		t.Fatalf("callback: %s, cookie %v; want 400 and no session", r.Status, b.sessionCookie())
	}
	if !strings.Contains(e.logs.String(), "not DPoP") {
		t.Error("the log does not say the token was not DPoP-bound")
	}
	if r := b.api(http.MethodGet, "/dpop/x"); r.StatusCode != http.StatusUnauthorized || len(rs.take()) != 0 {
		t.Fatalf("API call without a session: %s", r.Status)
	}
}

// TestDPoPRefreshRefusesBearer: a refresh answered with a Bearer token
// fails with 503 and keeps the session; the old bound token is not
// replaced and the Bearer one never reaches the upstream.
func TestDPoPRefreshRefusesBearer(t *testing.T) {
	e, rs := newDPoPEnv(t, memory.New(memory.Options{}))
	b := e.browser()
	b.login("/")
	at := e.accessToken(b.sessionCookie())
	e.expireAccessToken(b.sessionCookie())
	e.op.Set(func(b *oidctest.Behavior) { b.DPoPDowngrade = true })
	r := b.api(http.MethodGet, "/dpop/x")
	if r.StatusCode != http.StatusServiceUnavailable || b.sessionCookie() == nil {
		t.Fatalf("refresh answered Bearer: %s %s, want 503 with the session kept", r.Status, r.body)
	}
	if len(rs.take()) != 0 {
		t.Fatal("the upstream was called")
	}
	if e.accessToken(b.sessionCookie()) != at {
		t.Fatal("the unbound token replaced the session's")
	}
}

// TestDPoPLeavesOtherTokensBearer: with oidc.dpop, the tokens moat obtains
// without the session's key stay Bearer tokens and go upstream as such,
// with no proof: client-credentials tokens (token: client) and exchanged
// tokens (token_exchange), while the session's own token on the same moat
// goes with its proof. (An IdP that requires a proof on every token request
// refuses those two grants: 503, see docs/security.md.)
func TestDPoPLeavesOtherTokensBearer(t *testing.T) {
	e, rs := newDPoPEnv(t, memory.New(memory.Options{}),
		func(b *oidctest.Behavior) { b.ExchangeTargets, b.DPoPRequired = []string{"api-a"}, false },
		func(c *config.Config) {
			up := c.Routes[0].Upstream // the harness upstream's /api/
			c.Routes = append(c.Routes,
				config.Route{Prefix: "/client/", Upstream: up, Token: config.TokenClient},
				config.Route{Prefix: "/xchg/", Upstream: up, TokenExchange: &config.TokenExchange{Audience: "api-a"}})
		})
	b := e.browser()
	b.login("/")
	for _, path := range []string{"/client/x", "/xchg/x"} {
		if r := b.api(http.MethodGet, path); r.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", path, r.Status, r.body)
		}
		reqs := e.upstream.requests()
		last := reqs[len(reqs)-1]
		at, ok := strings.CutPrefix(last.Header.Get("Authorization"), "Bearer ")
		if !ok || last.Header.Get("DPoP") != "" || e.op.AccessTokenJKT(at) != "" {
			t.Errorf("%s: Authorization %q, DPoP %q: want an unbound Bearer token without a proof", path, last.Header.Get("Authorization"), last.Header.Get("DPoP"))
		}
	}
	if r := b.api(http.MethodGet, "/dpop/x"); r.StatusCode != http.StatusOK || len(rs.take()) == 0 {
		t.Fatalf("the session's route: %s", r.Status)
	}
}

package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// exchangeUpstream records, for each request, what the access token it
// received was exchanged for (Audience "-" when it was no live exchanged
// token).
type exchangeUpstream struct {
	*httptest.Server
	mu  sync.Mutex
	got []oidctest.Exchanged
	raw []string
}

func newExchangeUpstream(t *testing.T, op **oidctest.Provider) *exchangeUpstream {
	u := &exchangeUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := oidctest.Exchanged{Audience: "-"}
		at, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if v, live := (*op).ExchangedToken(at); live {
			x = v
		}
		u.mu.Lock()
		u.got = append(u.got, x)
		u.raw = append(u.raw, at)
		u.mu.Unlock()
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *exchangeUpstream) last() (oidctest.Exchanged, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return oidctest.Exchanged{Audience: "(no request)"}, ""
	}
	return u.got[len(u.got)-1], u.raw[len(u.raw)-1]
}

func (u *exchangeUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

func exchangeRoutes(a, b *exchangeUpstream) func(*config.Config) {
	return func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/x/a/", Upstream: a.URL + "/", TokenExchange: &config.TokenExchange{Audience: "api-a", Scope: []string{"orders:read"}}},
			config.Route{Prefix: "/x/b/", Upstream: b.URL + "/", TokenExchange: &config.TokenExchange{Resource: "https://api-b.example/"}},
		)
	}
}

// TestTokenExchange: each token_exchange route's upstream receives a token
// exchanged (RFC 8693) for exactly its target, with the session's access
// token as subject; one exchange per session per route while it is fresh;
// a refreshed user token gets a new exchange; a token for API A never
// reaches API B; sessions never share exchanged tokens; tokens never reach
// the logs.
func TestTokenExchange(t *testing.T) {
	var op *oidctest.Provider
	a, b := newExchangeUpstream(t, &op), newExchangeUpstream(t, &op)
	e := newEnv(t, exchangeRoutes(a, b), func(b *oidctest.Behavior) {
		b.ExchangeTargets = []string{"api-a", "https://api-b.example/"}
	})
	op = e.op
	br := e.browser()
	br.login("/")
	c := br.sessionCookie()
	userAT := e.accessToken(c)
	var tokA, tokB string
	for i := range 3 {
		if r := br.api("GET", "/x/a/orders"); r.StatusCode != http.StatusOK {
			t.Fatalf("route A: %s %s", r.Status, r.body)
		}
		x, raw := a.last()
		if x != (oidctest.Exchanged{Audience: "api-a", Scope: "orders:read", Subject: userAT}) {
			t.Fatalf("API A received a token exchanged for %+v", x)
		}
		if r := br.api("GET", "/x/b/y"); r.StatusCode != http.StatusOK {
			t.Fatalf("route B: %s %s", r.Status, r.body)
		}
		y, rawB := b.last()
		if y != (oidctest.Exchanged{Resource: "https://api-b.example/", Subject: userAT}) {
			t.Fatalf("API B received a token exchanged for %+v", y)
		}
		if raw == rawB || raw == userAT || rawB == userAT {
			t.Fatal("API A and API B (or the user's own token) share a token")
		}
		if i > 0 && (raw != tokA || rawB != tokB) {
			t.Error("a fresh exchanged token was not reused")
		}
		tokA, tokB = raw, rawB
	}
	if n := e.op.Grants("urn:ietf:params:oauth:grant-type:token-exchange"); n != 2 {
		t.Errorf("%d exchanges for six calls on two routes, want 2 (one per route, cached)", n)
	}
	var xreq []string
	for _, r := range e.op.Requests() {
		if r.Path == "/token" && r.Form.Get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange" {
			if r.ClientAuth != "client_secret_basic" || r.Form.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token" ||
				r.Form.Get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token" {
				t.Errorf("exchange request: auth %q form %v", r.ClientAuth, r.Form)
			}
			xreq = append(xreq, r.Form.Get("audience")+"|"+r.Form.Get("resource"))
		}
	}
	if strings.Join(xreq, ",") != "api-a|,|https://api-b.example/" {
		t.Errorf("exchange targets %v", xreq)
	}

	// A second session gets its own exchange, never the first one's token.
	br2 := e.browser()
	br2.login("/")
	if r := br2.api("GET", "/x/a/orders"); r.StatusCode != http.StatusOK {
		t.Fatalf("second session: %s", r.Status)
	}
	if x, raw := a.last(); raw == tokA || x.Subject != e.accessToken(br2.sessionCookie()) {
		t.Error("a second session received the first session's exchanged token")
	}

	// A refreshed user token is exchanged anew.
	e.expireAccessToken(c)
	if r := br.api("GET", "/x/a/orders"); r.StatusCode != http.StatusOK {
		t.Fatalf("route A after refresh: %s %s", r.Status, r.body)
	}
	newAT := e.accessToken(c)
	if x, raw := a.last(); newAT == userAT || x.Subject != newAT || raw == tokA {
		t.Errorf("after a refresh API A got %+v (user token changed: %v)", x, newAT != userAT)
	}
	if n := e.op.Grants("urn:ietf:params:oauth:grant-type:token-exchange"); n != 4 {
		t.Errorf("%d exchanges, want 4", n)
	}
	// The plain route keeps the session's own token.
	if r := br.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"sub":"alice"`) {
		t.Fatalf("the plain route: %s %s", r.Status, r.body)
	}
	e.scanLogs()
}

// TestTokenExchangeFailures: whatever goes wrong with the exchange is a 503
// that keeps the session, and the upstream never sees a token.
func TestTokenExchangeFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       func(*oidctest.Behavior)
		wantLog string
	}{
		{"outage", func(b *oidctest.Behavior) { b.ExchangeStatus = http.StatusServiceUnavailable }, "token exchange for audience"},
		{"unknown target", func(b *oidctest.Behavior) { b.ExchangeTargets = []string{"https://api-b.example/"} }, "invalid_target"},
		{"client refused", func(b *oidctest.Behavior) {
			b.ExchangeStatus, b.ExchangeError = http.StatusBadRequest, "unauthorized_client"
		}, "unauthorized_client"},
		{"subject refused", func(b *oidctest.Behavior) {
			b.ExchangeStatus, b.ExchangeError = http.StatusBadRequest, "invalid_grant"
		}, "invalid_grant"},
		{"N_A token", func(b *oidctest.Behavior) { b.ExchangeTokenType = "N_A" }, `issued_token_type \"N_A\"`},
		{"JWT not access token", func(b *oidctest.Behavior) {
			b.ExchangeTokenType = "urn:ietf:params:oauth:token-type:jwt"
		}, "issued_token_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var op *oidctest.Provider
			a, b := newExchangeUpstream(t, &op), newExchangeUpstream(t, &op)
			e := newEnv(t, exchangeRoutes(a, b), func(b *oidctest.Behavior) {
				b.ExchangeTargets = []string{"api-a", "https://api-b.example/"}
				tc.b(b)
			})
			op = e.op
			br := e.browser()
			br.login("/")
			r := br.api("GET", "/x/a/orders")
			if r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
				t.Fatalf("= %s %s, want 503 unavailable", r.Status, r.body)
			}
			if a.count() != 0 {
				t.Error("the upstream was called")
			}
			if r := br.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
				t.Fatalf("the session did not survive: %s", r.Status)
			}
			if !strings.Contains(e.logs.String(), tc.wantLog) {
				t.Errorf("the log does not say %q:\n%s", tc.wantLog, e.logs.String())
			}
			e.scanLogs()
		})
	}
}

// TestTokenExchangeDeadSession: a session whose refresh token is refused
// ends (401) on a token_exchange route as on any other, with no exchange.
func TestTokenExchangeDeadSession(t *testing.T) {
	var op *oidctest.Provider
	a, b := newExchangeUpstream(t, &op), newExchangeUpstream(t, &op)
	e := newEnv(t, exchangeRoutes(a, b), func(b *oidctest.Behavior) { b.ExchangeTargets = []string{"api-a"} })
	op = e.op
	br := e.browser()
	br.login("/")
	e.op.Set(func(b *oidctest.Behavior) { b.RefreshError = "invalid_grant" })
	e.expireAccessToken(br.sessionCookie())
	if r := br.api("GET", "/x/a/orders"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("= %s %s, want 401", r.Status, r.body)
	}
	if n := e.op.Grants("urn:ietf:params:oauth:grant-type:token-exchange"); n != 0 || a.count() != 0 {
		t.Errorf("%d exchanges, %d upstream calls for a dead session", n, a.count())
	}
}

// TestTokenExchangePrivateKeyJWT: the exchange authenticates moat as every
// token request does, here with private_key_jwt.
func TestTokenExchangePrivateKeyJWT(t *testing.T) {
	var op *oidctest.Provider
	a, b := newExchangeUpstream(t, &op), newExchangeUpstream(t, &op)
	path, ks := keyFile(t, "ES256")
	e := newEnv(t, exchangeRoutes(a, b), func(c *config.Config) {
		c.OIDC.ClientSecret = ""
		c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
		c.OIDC.ClientKeyFile = path
	}, func(p *oidctest.Provider) { p.UseClientKeys(ks.Public()) },
		func(b *oidctest.Behavior) { b.ExchangeTargets = []string{"api-a"} })
	op = e.op
	br := e.browser()
	br.login("/")
	if r := br.api("GET", "/x/a/orders"); r.StatusCode != http.StatusOK {
		t.Fatalf("= %s %s (OP: %s)", r.Status, r.body, e.op.AssertionError())
	}
	if x, _ := a.last(); x.Audience != "api-a" {
		t.Errorf("API A received %+v", x)
	}
	for _, r := range e.op.Requests() {
		if r.Path == "/token" && r.ClientAuth != "private_key_jwt" {
			t.Errorf("a token request used %q", r.ClientAuth)
		}
	}
}

// TestForwardAuthTokenExchange: forward-auth hands the gateway the token
// exchanged for the route's target, never the session's own.
func TestForwardAuthTokenExchange(t *testing.T) {
	f := newFAEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/x/a/", Upstream: "http://127.0.0.1:1/", TokenExchange: &config.TokenExchange{Audience: "api-a"}})
	}, func(b *oidctest.Behavior) { b.ExchangeTargets = []string{"api-a"} })
	b := f.browser()
	b.login("/")
	r := f.check(b, "GET", "/x/a/orders", "X-CSRF", "1")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("= %s %s", r.Status, r.body)
	}
	x, ok := f.op.ExchangedToken(bearer(r))
	if !ok || x.Audience != "api-a" || x.Subject != f.accessToken(b.sessionCookie()) {
		t.Errorf("forward-auth handed out %+v (exchanged: %v)", x, ok)
	}
}

// TestTokenExchangeRevokedSubject: a session token the IdP refuses as a
// subject (invalid_grant: revoked before its expiry) is refreshed once and
// exchanged again; if the refresh token is dead too the session ends (401);
// a token just obtained is not refreshed for a refusal (503), so an IdP
// that refuses every exchange cannot make moat refresh on every call.
func TestTokenExchangeRevokedSubject(t *testing.T) {
	for _, tc := range []struct {
		name        string
		age         time.Duration
		refreshDead bool
		want        int
		refreshes   int
	}{
		{"revoked, refreshed", 2 * time.Minute, false, http.StatusOK, 1},
		{"revoked, refresh token dead", 2 * time.Minute, true, http.StatusUnauthorized, 1},
		{"just obtained", 0, false, http.StatusServiceUnavailable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var op *oidctest.Provider
			a, b := newExchangeUpstream(t, &op), newExchangeUpstream(t, &op)
			e := newEnv(t, exchangeRoutes(a, b), func(b *oidctest.Behavior) { b.ExchangeTargets = []string{"api-a"} })
			op = e.op
			br := e.browser()
			br.login("/")
			c := br.sessionCookie()
			old := e.accessToken(c)
			e.op.ForgetAccessToken(old)
			e.clock.Advance(tc.age)
			if tc.refreshDead {
				e.op.Set(func(b *oidctest.Behavior) { b.RefreshError = "invalid_grant" })
			}
			r := br.api("GET", "/x/a/orders")
			if r.StatusCode != tc.want {
				t.Fatalf("= %s %s, want %d", r.Status, r.body, tc.want)
			}
			if n := e.op.Grants("refresh_token"); n != tc.refreshes {
				t.Errorf("%d refreshes, want %d", n, tc.refreshes)
			}
			switch tc.want {
			case http.StatusOK:
				nat := e.accessToken(c)
				if x, _ := a.last(); nat == old || x.Subject != nat || x.Audience != "api-a" {
					t.Errorf("API A received %+v after the refresh", x)
				}
			case http.StatusUnauthorized:
				if r := br.api("GET", "/resource/api/x"); r.StatusCode != http.StatusUnauthorized {
					t.Errorf("the dead session lives on: %s", r.Status)
				}
			default:
				if a.count() != 0 {
					t.Error("the upstream was called")
				}
			}
		})
	}
}

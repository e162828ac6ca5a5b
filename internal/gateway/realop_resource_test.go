package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/realop"
)

// jwtAPI is a resource server that accepts only JWT access tokens signed by
// the provider whose audience is its own resource indicator, as an RFC 9068
// API does, and records the audiences it was shown.
type jwtAPI struct {
	*httptest.Server
	resource string
	mu       sync.Mutex
	seen     []string // "aud:<audiences>" or "refused"
}

func newJWTAPI(t *testing.T, op **realop.OP, resource string) *jwtAPI {
	a := &jwtAPI{resource: resource}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var keys jose.JSONWebKeySet
		resp, err := http.Get((*op).Issuer + "/jwks")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&keys)
			resp.Body.Close()
		}
		raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var c jwt.Claims
		tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA})
		if err == nil {
			err = tok.Claims(keys, &c)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err != nil || !c.Audience.Contains(resource) {
			a.seen = append(a.seen, "refused")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		a.seen = append(a.seen, "aud:"+strings.Join(c.Audience, ","))
		json.NewEncoder(w).Encode(map[string]string{"sub": c.Subject})
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *jwtAPI) log() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// TestRealOPResourceIndicators: against the real oidc-provider, each route
// with routes[].resource sends its API a JWT access token the provider
// issued for exactly that resource (RFC 8707 §2.2, obtained with the
// refresh token), so API A accepts its own and would refuse B's; the
// session's own token still serves UserInfo and the plain route.
func TestRealOPResourceIndicators(t *testing.T) {
	const resA, resB = "https://api-a.example.test/", "https://api-b.example.test/"
	var op *realop.OP
	a, b := newJWTAPI(t, &op, resA), newJWTAPI(t, &op, resB)
	e := newRealEnv(t, realop.Options{Resources: map[string]string{resA: "a:read", resB: "b:read"}}, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/resource/a/", Upstream: a.URL + "/", Resource: resA},
			config.Route{Prefix: "/resource/b/", Upstream: b.URL + "/", Resource: resB},
			// API A behind a route with B's resource: must be refused.
			config.Route{Prefix: "/resource/a-with-b/", Upstream: a.URL + "/", Resource: resB},
		)
	})
	op = e.op
	ua := e.op.UserAgent("alice")
	e.login(t, ua)
	for range 2 {
		for _, path := range []string{"/resource/a/x", "/resource/b/x"} {
			if r := e.api(t, ua, http.MethodGet, path); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
				t.Fatalf("%s: %d %s\nprovider: %s", path, r.Status, r.Body, e.op.Stderr())
			}
		}
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/a-with-b/x"); r.Status != http.StatusUnauthorized {
		t.Fatalf("API A accepted the token for B: %d", r.Status)
	}
	if got := a.log(); len(got) != 3 || got[0] != "aud:"+resA || got[1] != "aud:"+resA || got[2] != "refused" {
		t.Fatalf("API A saw %v", got)
	}
	if got := b.log(); len(got) != 2 || got[0] != "aud:"+resB {
		t.Fatalf("API B saw %v", got)
	}
	// The session's own token is unchanged: UserInfo and the plain route.
	if r := e.api(t, ua, http.MethodGet, "/auth/userinfo"); r.Status != http.StatusOK {
		t.Fatalf("userinfo: %d %s", r.Status, r.Body)
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/api/x"); r.Status != http.StatusOK {
		t.Fatalf("plain route: %d %s", r.Status, r.Body)
	}
	if toks := e.tokens(t, ua); len(toks.Resources) != 2 {
		t.Fatalf("session holds %d resource tokens, want 2 (one each, cached)", len(toks.Resources))
	}
}

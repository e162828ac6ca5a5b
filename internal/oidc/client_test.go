package oidc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/testclock"
	"golang.org/x/oauth2"
)

const redirect = "http://127.0.0.1:4001/auth/callback"

func newClient(t *testing.T, p *oidctest.Provider, mod func(*oidc.Config)) *oidc.Client {
	t.Helper()
	return newClientWith(t, p, mod)
}

func newClientTB(t testing.TB, p *oidctest.Provider) *oidc.Client { return newClientWith(t, p, nil) }

func newClientWith(t testing.TB, p *oidctest.Provider, mod func(*oidc.Config)) *oidc.Client {
	cfg := oidc.Config{
		Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: secret.String(p.ClientSecret),
		AuthMethod: "client_secret_basic", Scopes: []string{"openid", "profile"},
		RedirectURL: redirect, MaxIDTokenAge: 10 * time.Minute, ClockSkew: time.Minute,
		HTTPClient: &http.Client{Timeout: 2 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	return oidc.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// authorize runs the front channel: it follows the authorization URL and
// returns the authorization response's query.
func authorize(t *testing.T, c *oidc.Client, req oidc.AuthRequest) url.Values {
	t.Helper()
	u, err := c.AuthCodeURL(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return followAuth(t, u)
}

// followAuth runs the front channel from an authorization URL and returns
// the authorization response's query.
func followAuth(t *testing.T, u string) url.Values {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s %v", resp.Status, err)
	}
	return loc.Query()
}

func login(t *testing.T, c *oidc.Client, nonce string) (oidc.Tokens, *oidc.Identity, error) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := authorize(t, c, oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier})
	if q.Get("state") != "st" {
		t.Fatalf("state = %q", q.Get("state"))
	}
	return c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: verifier, Nonce: nonce})
}

func TestExchangeHappyPath(t *testing.T) {
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			p := oidctest.New(t, redirect)
			c := newClient(t, p, func(c *oidc.Config) { c.AuthMethod = method })
			tok, id, err := login(t, c, "n-1")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" || tok.Expiry.IsZero() {
				t.Errorf("tokens incomplete: %+v", tok)
			}
			if id.Subject != "alice" || id.Issuer != p.Issuer || id.SID == "" || id.Claims["email"] != "alice@example.com" {
				t.Errorf("identity = %+v", id)
			}
			for _, k := range []string{"nonce", "aud", "at_hash", "exp"} {
				if _, ok := id.Claims[k]; ok {
					t.Errorf("claims keep protocol claim %q", k)
				}
			}
			for _, r := range p.Requests() {
				if r.Path == "/token" && r.ClientAuth != method {
					t.Errorf("token request authenticated with %q", r.ClientAuth)
				}
			}
		})
	}
}

func TestIDTokenRejections(t *testing.T) {
	foreignSameKid := func(p *oidctest.Provider) func(map[string]any) string {
		return func(c map[string]any) string { return oidctest.SignWith(oidctest.NewKey(p.CurrentKeyID()), "JWT", c) }
	}
	cases := []struct {
		name   string
		nonce  string
		mutate func(map[string]any)
		sign   func(p *oidctest.Provider) func(map[string]any) string
		trust  []string
	}{
		{name: "wrong nonce", nonce: "other"},
		{name: "missing nonce", mutate: func(c map[string]any) { delete(c, "nonce") }},
		{name: "iss other", mutate: func(c map[string]any) { c["iss"] = "https://evil.example" }},
		{name: "iss trailing slash", mutate: func(c map[string]any) { c["iss"] = c["iss"].(string) + "/" }},
		{name: "iss case", mutate: func(c map[string]any) { c["iss"] = strings.ToUpper(c["iss"].(string)) }},
		{name: "aud other", mutate: func(c map[string]any) { c["aud"] = []string{"x"} }},
		{name: "aud untrusted extra", mutate: func(c map[string]any) {
			c["aud"] = []string{c["aud"].(string), "untrusted"}
			c["azp"] = c["aud"].([]string)[0]
		}},
		{name: "aud trusted extra without azp", trust: []string{"api"}, mutate: func(c map[string]any) { c["aud"] = []string{c["aud"].(string), "api"} }},
		{name: "azp other", mutate: func(c map[string]any) { c["azp"] = "other" }},
		{name: "expired", mutate: func(c map[string]any) { c["exp"] = time.Now().Add(-5 * time.Minute).Unix() }},
		{name: "iat a day old", mutate: func(c map[string]any) { c["iat"] = time.Now().Add(-24 * time.Hour).Unix() }},
		{name: "iat in the future", mutate: func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }},
		{name: "no iat", mutate: func(c map[string]any) { delete(c, "iat") }},
		{name: "no sub", mutate: func(c map[string]any) { delete(c, "sub") }},
		{name: "wrong at_hash", mutate: func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }},
		{name: "alg none", sign: func(*oidctest.Provider) func(map[string]any) string { return oidctest.SignNone }},
		{name: "HS256 with client secret", sign: func(p *oidctest.Provider) func(map[string]any) string {
			return func(c map[string]any) string { return oidctest.SignHS256(p.ClientSecret, c) }
		}},
		{name: "foreign key, known kid", sign: foreignSameKid},
		{name: "foreign key, unknown kid", sign: func(*oidctest.Provider) func(map[string]any) string {
			return func(c map[string]any) string { return oidctest.SignWith(oidctest.NewKey("evil"), "JWT", c) }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.New(t, redirect)
			p.Set(func(b *oidctest.Behavior) {
				b.MutateIDToken = tc.mutate
				if tc.sign != nil {
					b.Sign = tc.sign(p)
				}
			})
			c := newClient(t, p, func(c *oidc.Config) { c.TrustedAudiences = tc.trust })
			nonce := tc.nonce
			if nonce == "" {
				nonce = "n-1"
			}
			tok, id, err := login(t, c, nonce)
			t.Log(err)
			if !errors.Is(err, oidc.ErrRejected) {
				t.Fatalf("err = %v, want ErrRejected", err)
			}
			if tok.AccessToken != "" || id != nil {
				t.Errorf("rejected exchange returned tokens or identity")
			}
		})
	}
}

func TestTrustedExtraAudienceWithAZP(t *testing.T) {
	p := oidctest.New(t, redirect)
	p.Set(func(b *oidctest.Behavior) {
		b.MutateIDToken = func(c map[string]any) { c["aud"] = []string{p.ClientID, "api"}; c["azp"] = p.ClientID }
	})
	c := newClient(t, p, func(c *oidc.Config) { c.TrustedAudiences = []string{"api"} })
	if _, _, err := login(t, c, "n-1"); err != nil {
		t.Fatal(err)
	}
}

// An ID token from the token endpoint with a new kid makes moat fetch the
// JWKS again at once, whatever the 10 s interval that bounds refetches for
// logout tokens: only the IdP signs what its token endpoint answers, and
// Ory Hydra signs with a new key the moment it exists. A kid that even a
// JWKS fetched after the token arrived lacks is a 503 (try again), with no
// further fetch for that token.
func TestKeyRotationRefetchesJWKS(t *testing.T) {
	p := oidctest.New(t, redirect)
	clk := testclock.New(time.Now())
	c := newClient(t, p, func(c *oidc.Config) { c.Now = clk.Now })
	if _, _, err := login(t, c, "n-1"); err != nil {
		t.Fatal(err)
	}
	p.RotateKey()
	if _, _, err := login(t, c, "n-1"); err != nil {
		t.Fatalf("new kid right after the last fetch: %v", err)
	}
	if _, _, err := login(t, c, "n-1"); err != nil {
		t.Fatal(err)
	}
	if n := jwksFetches(p); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (the first, and one for the new kid)", n)
	}
	// A logout token with a newer kid still waits for the interval.
	p.RotateKey()
	if _, err := c.VerifyLogoutToken(context.Background(), p.LogoutToken("alice", "", nil)); !errors.Is(err, oidc.ErrRejected) {
		t.Fatalf("logout token with a new kid within 10 s of the last fetch: %v, want rejected", err)
	}
	if n := jwksFetches(p); n != 2 {
		t.Errorf("a logout token refetched the JWKS within the interval: %d fetches", n)
	}
}

func jwksFetches(p *oidctest.Provider) int {
	n := 0
	for _, r := range p.Requests() {
		if r.Path == "/jwks" {
			n++
		}
	}
	return n
}

func TestCheckIssuer(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newClient(t, p, nil)
	ctx := context.Background()
	cases := []struct {
		name      string
		advertise bool
		query     url.Values
		ok        bool
	}{
		{"match", true, url.Values{"iss": {p.Issuer}}, true},
		{"wrong", true, url.Values{"iss": {"https://evil.example"}}, false},
		{"trailing slash", true, url.Values{"iss": {p.Issuer + "/"}}, false},
		{"twice", true, url.Values{"iss": {p.Issuer, p.Issuer}}, false},
		{"missing while advertised", true, url.Values{}, false},
		{"missing, not advertised", false, url.Values{}, true},
		{"wrong, not advertised", false, url.Values{"iss": {"https://evil.example"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(func(b *oidctest.Behavior) { b.AdvertiseIss = tc.advertise })
			c := newClient(t, p, nil) // fresh discovery
			err := c.CheckIssuer(ctx, tc.query)
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	_ = c
}

func TestRefresh(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newClient(t, p, nil)
	tok, id, err := login(t, c, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	next, nid, err := c.Refresh(ctx, tok.RefreshToken, id.Subject, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken || nid == nil || nid.Subject != "alice" {
		t.Errorf("refresh did not rotate: %v", next)
	}
	if _, _, err := c.Refresh(ctx, tok.RefreshToken, id.Subject, nil); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("spent refresh token: err = %v, want ErrInvalidGrant", err)
	}
	p.Set(func(b *oidctest.Behavior) { b.RefreshError = "server_error" })
	if _, _, err := c.Refresh(ctx, "rt-whatever", "alice", nil); !errors.Is(err, oidc.ErrUnavailable) {
		t.Errorf("5xx: err = %v, want ErrUnavailable", err)
	}
	p.Set(func(b *oidctest.Behavior) { b.RefreshError = "hang" })
	start := time.Now()
	if _, _, err := c.Refresh(ctx, "rt-whatever", "alice", nil); !errors.Is(err, oidc.ErrUnavailable) {
		t.Errorf("hang: err = %v, want ErrUnavailable", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("hanging IdP held the refresh for %v", time.Since(start))
	}
}

func TestUserInfoSubjectMustMatch(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newClient(t, p, nil)
	tok, _, err := login(t, c, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	claims, err := c.UserInfo(context.Background(), tok.AccessToken, "alice", nil)
	if err != nil || claims["email"] != "alice@example.com" {
		t.Fatalf("userinfo = %v, %v", claims, err)
	}
	p.Set(func(b *oidctest.Behavior) { b.UserInfoSub = "mallory" })
	if _, err := c.UserInfo(context.Background(), tok.AccessToken, "alice", nil); !errors.Is(err, oidc.ErrRejected) {
		t.Errorf("mismatched sub: err = %v", err)
	}
}

func TestDiscoveryOutageAndRecovery(t *testing.T) {
	p := oidctest.New(t, redirect)
	now := time.Now()
	c := newClient(t, p, func(c *oidc.Config) {
		c.Issuer = "http://127.0.0.1:1" // nothing listens
		c.Now = func() time.Time { return now }
	})
	if _, err := c.Discover(context.Background()); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Discover(context.Background()); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("cached err = %v", err)
	}
}

func TestRevokeAndEndSession(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newClient(t, p, nil)
	tok, _, err := login(t, c, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(context.Background(), tok.RefreshToken, "refresh_token"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Refresh(context.Background(), tok.RefreshToken, "alice", nil); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("revoked refresh token still works: %v", err)
	}
	var auth string
	for _, r := range p.Requests() {
		if r.Path == "/revoke" {
			auth = r.ClientAuth
		}
	}
	if auth != "client_secret_basic" {
		t.Errorf("revocation client auth = %q", auth)
	}
	u, ok := c.EndSessionURL(context.Background(), tok.IDToken, "http://127.0.0.1:4001/", "xyz")
	if !ok || !strings.HasPrefix(u, p.Issuer+"/end_session?") || !strings.Contains(u, "id_token_hint=") || !strings.Contains(u, "state=xyz") {
		t.Errorf("end session URL = %q", u)
	}
}

package oidc_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/dpop/dpoptest"
	"github.com/moat-bff/moat/internal/dpop/dpopverify"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"golang.org/x/oauth2"
)

// newDPoPClient is a client with oidc.dpop whose provider's token and PAR
// endpoints are behind as, a DPoP authorization server (dpoptest).
func newDPoPClient(t *testing.T, p *oidctest.Provider, nonces bool, mod func(*oidc.Config)) (*oidc.Client, *dpoptest.AS) {
	t.Helper()
	as := dpoptest.New(t, p.Issuer, nonces)
	p.Set(func(b *oidctest.Behavior) { b.MutateDiscovery = as.Point })
	return newClient(t, p, func(c *oidc.Config) {
		c.DPoP = true
		if mod != nil {
			mod(c)
		}
	}), as
}

func dpopLogin(t *testing.T, c *oidc.Client, key *dpop.Key) (oidc.Tokens, *oidc.Identity, error) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := authorize(t, c, oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier, DPoP: key})
	return c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1", DPoP: key})
}

// TestDPoPTokenRequests: with oidc.dpop every token request carries a
// proof by the session's key for the token endpoint; a server nonce asked
// for is sent on one retry and remembered, a changed one is retried with
// once more, and the tokens come back as DPoP tokens.
func TestDPoPTokenRequests(t *testing.T) {
	for _, par := range []bool{false, true} {
		t.Run(map[bool]string{false: "front channel", true: "PAR"}[par], func(t *testing.T) {
			p := oidctest.New(t, redirect)
			p.Set(func(b *oidctest.Behavior) { b.PAR = par })
			c, as := newDPoPClient(t, p, true, nil)
			key, _ := dpop.NewKey()
			verifier := oauth2.GenerateVerifier()
			u, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier, DPoP: key})
			if err != nil {
				t.Fatal(err)
			}
			var want []dpoptest.Seen
			if par {
				// RFC 9449 §10.1: the PAR request carries a proof; the first
				// is refused for its missing nonce, the retry carries it.
				want = append(want, dpoptest.Seen{Path: "/par", Refused: "use_dpop_nonce"}, dpoptest.Seen{Path: "/par", Nonce: as.Nonces.Current(), JKT: key.Thumbprint()})
				if strings.Contains(u, "dpop_jkt") {
					t.Errorf("the pushed request leaked into the URL: %s", u)
				}
				if got := p.Requests(); !slices0(got, "/par", "dpop_jkt", key.Thumbprint()) {
					t.Errorf("the pushed request did not name dpop_jkt %s", key.Thumbprint())
				}
			} else if !strings.Contains(u, "dpop_jkt="+key.Thumbprint()) {
				t.Errorf("authorization URL lacks dpop_jkt (RFC 9449 §10): %s", u)
			}
			q := followAuth(t, u)
			tok, id, err := c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1", DPoP: key})
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "DPoP" {
				t.Errorf("token type %q, want DPoP", tok.TokenType)
			}
			if !par {
				want = append(want, dpoptest.Seen{Path: "/token", Refused: "use_dpop_nonce"})
			}
			want = append(want, dpoptest.Seen{Path: "/token", Nonce: as.Nonces.Current(), JKT: key.Thumbprint()})
			// The nonce is remembered: the refresh needs no retry.
			tok, _, err = c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, dpoptest.Seen{Path: "/token", Nonce: as.Nonces.Current(), JKT: key.Thumbprint()})
			// A new nonce: the refresh is refused once and retried with it.
			as.Nonces.Rotate()
			as.Nonces.Rotate()
			next, _, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
			if err != nil {
				t.Fatal(err)
			}
			if next.TokenType != "DPoP" {
				t.Errorf("refreshed token type %q, want DPoP", next.TokenType)
			}
			want = append(want, dpoptest.Seen{Path: "/token", Refused: "use_dpop_nonce"}, dpoptest.Seen{Path: "/token", Nonce: as.Nonces.Current(), JKT: key.Thumbprint()})
			got := as.Seen()
			if !equalSeen(got, want) {
				t.Fatalf("proofs:\n got %+v\nwant %+v", got, want)
			}
		})
	}
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

func slices0(reqs []oidctest.Request, path, param, value string) bool {
	for _, r := range reqs {
		if strings.HasSuffix(r.Path, path) && r.Form.Get(param) == value {
			return true
		}
	}
	return false
}

func equalSeen(a, b []dpoptest.Seen) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDPoPRefusals: what must fail, fails, and nothing is downgraded.
func TestDPoPRefusals(t *testing.T) {
	t.Run("Bearer answer to a DPoP login", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		c, as := newDPoPClient(t, p, false, nil)
		as.SetMode(dpoptest.Bearer)
		key, _ := dpop.NewKey()
		tok, id, err := dpopLogin(t, c, key)
		if !errors.Is(err, oidc.ErrNotBound) || !errors.Is(err, oidc.ErrRejected) || errors.Is(err, oidc.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrNotBound and ErrRejected", err)
		}
		if tok.AccessToken != "" || id != nil {
			t.Fatalf("an unbound token was returned: %+v", tok)
		}
		if !strings.Contains(err.Error(), `token_type "Bearer"`) || !strings.Contains(err.Error(), "oidc.dpop") {
			t.Errorf("the error does not say what happened and what to change: %v", err)
		}
	})
	t.Run("Bearer answer to a DPoP refresh", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		p.Set(func(b *oidctest.Behavior) { b.RotateRefreshTokens = false }) // one refresh token for both tries
		c, as := newDPoPClient(t, p, false, func(c *oidc.Config) { c.Resources = []string{"https://api.example"} })
		key, _ := dpop.NewKey()
		tok, id, err := dpopLogin(t, c, key)
		if err != nil {
			t.Fatal(err)
		}
		as.SetMode(dpoptest.Bearer)
		next, nid, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
		if !errors.Is(err, oidc.ErrNotBound) || errors.Is(err, oidc.ErrInvalidGrant) {
			t.Fatalf("err = %v, want ErrNotBound, not a dead grant", err)
		}
		if next.AccessToken != "" || nid != nil {
			t.Fatalf("an unbound token was returned: %+v", next)
		}
		if _, _, err := c.RefreshResource(context.Background(), tok.RefreshToken, id.Subject, "https://api.example", key); !errors.Is(err, oidc.ErrNotBound) {
			t.Fatalf("resource refresh: err = %v, want ErrNotBound", err)
		}
	})
	t.Run("use_dpop_nonce again after the retry", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		c, as := newDPoPClient(t, p, true, nil)
		key, _ := dpop.NewKey()
		tok, id, err := dpopLogin(t, c, key)
		if err != nil {
			t.Fatal(err)
		}
		as.Seen()
		as.SetMode(dpoptest.AlwaysNonce)
		_, _, err = c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
		if !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, oidc.ErrInvalidGrant) {
			t.Fatalf("err = %v, want a transient error that keeps the session", err)
		}
		if n := len(as.Seen()); n != 2 {
			t.Fatalf("%d token requests, want 2: one retry, no loop", n)
		}
	})
	t.Run("no key with oidc.dpop", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		c, as := newDPoPClient(t, p, false, nil)
		if _, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "s", Nonce: "n", Verifier: oauth2.GenerateVerifier()}); err == nil {
			t.Error("login started without a DPoP key")
		}
		if _, _, err := c.Refresh(context.Background(), "rt", "alice", nil); err == nil {
			t.Error("refresh sent without a DPoP key")
		}
		if got := as.Seen(); len(got) != 0 {
			t.Errorf("requests reached the token endpoint: %+v", got)
		}
	})
	t.Run("Bearer login without oidc.dpop sends no proof", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		as := dpoptest.New(t, p.Issuer, false)
		p.Set(func(b *oidctest.Behavior) { b.MutateDiscovery = as.Point })
		c := newClient(t, p, nil)
		tok, _, err := login(t, c, "n-1")
		if err == nil || tok.AccessToken != "" {
			t.Fatalf("the DPoP server took a request without a proof: %v", err)
		}
		if got := as.Seen(); len(got) != 1 || got[0].Refused != "invalid_dpop_proof" {
			t.Fatalf("proofs %+v, want one refused for lacking a proof", got)
		}
	})
}

// TestDPoPUserInfo: a bound token goes to UserInfo with a proof for it.
func TestDPoPUserInfo(t *testing.T) {
	p := oidctest.New(t, redirect)
	var got http.Header
	c, _ := newDPoPClient(t, p, false, func(c *oidc.Config) {
		// The fake OP's UserInfo knows Bearer tokens only: the header
		// moat sent is kept, and the OP is asked the old way.
		c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/userinfo") {
				got = r.Header.Clone()
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(r.Header.Get("Authorization"), "DPoP "))
			}
			return http.DefaultTransport.RoundTrip(r)
		})}
	})
	key, _ := dpop.NewKey()
	tok, id, err := dpopLogin(t, c, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UserInfo(context.Background(), tok.AccessToken, id.Subject, key); err != nil {
		t.Fatal(err)
	}
	v, _ := dpopverify.New(dpopverify.Options{})
	md, _ := c.Discover(context.Background())
	if got.Get("Authorization") != "DPoP "+tok.AccessToken {
		t.Fatalf("Authorization %q, want the DPoP scheme", got.Get("Authorization"))
	}
	pr, err := v.Verify(got.Values("DPoP"), dpopverify.Request{Method: "GET", URL: md.UserinfoEndpoint, AccessToken: tok.AccessToken})
	if err != nil || pr.JKT != key.Thumbprint() {
		t.Fatalf("userinfo proof: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDPoPDiscovery: a provider that names its proof algorithms without
// ES256 fails moat check and /readyz under oidc.dpop; under fapi2 it must
// name ES256.
func TestDPoPDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		algs    any // nil: absent
		profile string
		want    string
	}{
		{"ES256 listed", []string{"ES256", "PS256"}, "", ""},
		{"not advertised", nil, "", ""},
		{"ES256 missing", []string{"PS256"}, "", `oidc.dpop: the provider's dpop_signing_alg_values_supported ["PS256"] lacks ES256`},
		{"fapi2, ES256 listed", []string{"ES256"}, oidc.ProfileFAPI2, ""},
		{"fapi2, not advertised", nil, oidc.ProfileFAPI2, "oidc.profile: fapi2, but the provider's dpop_signing_alg_values_supported [] lacks ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.New(t, redirect)
			p.Set(func(b *oidctest.Behavior) {
				b.PAR, b.AdvertiseIss = true, true
				b.MutateDiscovery = func(d map[string]any) {
					if tc.algs != nil {
						d["dpop_signing_alg_values_supported"] = tc.algs
					}
					d["token_endpoint_auth_methods_supported"] = []string{"client_secret_basic"}
					d["id_token_signing_alg_values_supported"] = []string{"ES256", "RS256"}
				}
			})
			c := newClient(t, p, func(c *oidc.Config) { c.DPoP, c.Profile = true, tc.profile })
			md, err := c.Discover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			m := strings.Join(c.Mismatches(md), "\n")
			if tc.want == "" && m != "" || tc.want != "" && !strings.Contains(m, tc.want) {
				t.Fatalf("mismatches:\n%s\nwant %q", m, tc.want)
			}
		})
	}
}

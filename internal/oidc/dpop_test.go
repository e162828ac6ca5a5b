package oidc_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"golang.org/x/oauth2"
)

// newDPoPClient is a client with oidc.dpop at a provider that requires
// DPoP proofs at its token and PAR endpoints, and its nonces when nonces.
func newDPoPClient(t *testing.T, p *oidctest.Provider, nonces bool, mod func(*oidc.Config)) *oidc.Client {
	t.Helper()
	p.Set(func(b *oidctest.Behavior) { b.DPoP, b.DPoPRequired, b.DPoPRequireNonce = true, true, nonces })
	return newClient(t, p, func(c *oidc.Config) {
		c.DPoP = true
		if mod != nil {
			mod(c)
		}
	})
}

// proofSeen is what a token or PAR request carried: its endpoint and its
// proof's key and nonce ("" without a proof).
type proofSeen struct{ path, jkt, nonce string }

// proofsSince returns the proofs of the token and PAR requests p received
// after the first n requests, read from the proofs (already checked by p).
func proofsSince(t *testing.T, p *oidctest.Provider, n int) []proofSeen {
	t.Helper()
	var out []proofSeen
	for _, r := range p.Requests()[n:] {
		if r.Path != "/token" && r.Path != "/par" {
			continue
		}
		s := proofSeen{path: r.Path}
		if r.DPoP != "" {
			jws, err := jose.ParseSigned(r.DPoP, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Nonce string `json:"nonce"`
			}
			json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c)
			tp, _ := jws.Signatures[0].Protected.JSONWebKey.Thumbprint(crypto.SHA256)
			s.jkt, s.nonce = base64.RawURLEncoding.EncodeToString(tp), c.Nonce
		}
		out = append(out, s)
	}
	return out
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
			c := newDPoPClient(t, p, true, nil)
			key, _ := dpop.NewKey()
			jkt := key.Thumbprint()
			verifier := oauth2.GenerateVerifier()
			u, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier, DPoP: key})
			if err != nil {
				t.Fatal(err)
			}
			nonce := p.DPoPNonce()
			var want []proofSeen
			if par {
				// RFC 9449 §10.1: the PAR request carries a proof; the first
				// is refused for its missing nonce, the retry carries it.
				want = append(want, proofSeen{"/par", jkt, ""}, proofSeen{"/par", jkt, nonce})
				if strings.Contains(u, "dpop_jkt") {
					t.Errorf("the pushed request leaked into the URL: %s", u)
				}
				if !pushed(p.Requests(), "/par", "dpop_jkt", jkt) {
					t.Errorf("the pushed request did not name dpop_jkt %s", jkt)
				}
			} else if !strings.Contains(u, "dpop_jkt="+jkt) {
				t.Errorf("authorization URL lacks dpop_jkt (RFC 9449 §10): %s", u)
			}
			q := followAuth(t, u)
			tok, id, err := c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1", DPoP: key})
			if err != nil {
				t.Fatalf("%v (provider: %s)", err, p.DPoPError())
			}
			if tok.TokenType != "DPoP" || p.AccessTokenJKT(tok.AccessToken) != jkt {
				t.Errorf("token type %q bound to %q, want DPoP bound to %s", tok.TokenType, p.AccessTokenJKT(tok.AccessToken), jkt)
			}
			if !par {
				want = append(want, proofSeen{"/token", jkt, ""})
			}
			want = append(want, proofSeen{"/token", jkt, nonce})
			// The nonce is remembered: the refresh needs no retry.
			tok, _, err = c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, proofSeen{"/token", jkt, nonce})
			// A new nonce: the refresh is refused once and retried with it.
			p.RotateDPoPNonce()
			next, _, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
			if err != nil {
				t.Fatal(err)
			}
			if next.TokenType != "DPoP" || p.AccessTokenJKT(next.AccessToken) != jkt {
				t.Errorf("refreshed token type %q bound to %q, want DPoP bound to %s", next.TokenType, p.AccessTokenJKT(next.AccessToken), jkt)
			}
			want = append(want, proofSeen{"/token", jkt, nonce}, proofSeen{"/token", jkt, p.DPoPNonce()})
			if got := proofsSince(t, p, 0); !slices.Equal(got, want) {
				t.Fatalf("proofs:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// pushed reports whether some request to path carried param=value.
func pushed(reqs []oidctest.Request, path, param, value string) bool {
	for _, r := range reqs {
		if strings.HasSuffix(r.Path, path) && r.Form.Get(param) == value {
			return true
		}
	}
	return false
}

// TestDPoPRefusals: what must fail, fails, and nothing is downgraded.
func TestDPoPRefusals(t *testing.T) {
	t.Run("Bearer answer to a DPoP login", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		c := newDPoPClient(t, p, false, nil)
		p.Set(func(b *oidctest.Behavior) { b.DPoPDowngrade = true })
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
		c := newDPoPClient(t, p, false, func(c *oidc.Config) { c.Resources = []string{"https://api.example"} })
		key, _ := dpop.NewKey()
		tok, id, err := dpopLogin(t, c, key)
		if err != nil {
			t.Fatal(err)
		}
		p.Set(func(b *oidctest.Behavior) { b.DPoPDowngrade = true })
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
		// A provider whose nonce has changed again by each request.
		c := newDPoPClient(t, p, true, func(c *oidc.Config) {
			c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Path == "/token" && r.Header.Get("DPoP") != "" {
					p.RotateDPoPNonce()
				}
				return http.DefaultTransport.RoundTrip(r)
			})}
		})
		key, _ := dpop.NewKey()
		q := authorize(t, c, oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: "v-0123456789012345678901234567890123456789012", DPoP: key})
		n := len(p.Requests())
		_, _, err := c.Exchange(context.Background(), q.Get("code"), oidc.Expect{Verifier: "v-0123456789012345678901234567890123456789012", Nonce: "n-1", DPoP: key})
		if !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, oidc.ErrInvalidGrant) {
			t.Fatalf("err = %v, want a transient error", err)
		}
		if got := proofsSince(t, p, n); len(got) != 2 {
			t.Fatalf("%d token requests (%+v), want 2: one retry, no loop", len(got), got)
		}
		if _, _, err := c.Refresh(context.Background(), "rt-any", "alice", key); !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, oidc.ErrInvalidGrant) {
			t.Fatalf("refresh: err = %v, want a transient error that keeps the session", err)
		}
	})
	t.Run("no key with oidc.dpop", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		c := newDPoPClient(t, p, false, nil)
		if _, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "s", Nonce: "n", Verifier: oauth2.GenerateVerifier()}); err == nil {
			t.Error("login started without a DPoP key")
		}
		if _, _, err := c.Refresh(context.Background(), "rt", "alice", nil); !errors.Is(err, oidc.ErrNoDPoPKey) {
			t.Errorf("refresh without a DPoP key: %v, want ErrNoDPoPKey", err)
		}
		if got := proofsSince(t, p, 0); len(got) != 0 {
			t.Errorf("requests reached the token endpoint: %+v", got)
		}
	})
	t.Run("Bearer login without oidc.dpop sends no proof", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		c := newClient(t, p, nil)
		tok, _, err := login(t, c, "n-1")
		if err != nil || tok.TokenType != "Bearer" {
			t.Fatalf("login: %v, token type %q", err, tok.TokenType)
		}
		if got := proofsSince(t, p, 0); len(got) != 1 || got[0].jkt != "" {
			t.Fatalf("token requests %+v, want one without a proof", got)
		}
	})
}

// TestDPoPUserInfo: a bound token goes to UserInfo with a proof for it.
func TestDPoPUserInfo(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newDPoPClient(t, p, false, nil)
	key, _ := dpop.NewKey()
	tok, id, err := dpopLogin(t, c, key)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := c.UserInfo(context.Background(), tok.AccessToken, id.Subject, key)
	if err != nil || claims["sub"] != id.Subject {
		t.Fatalf("userinfo with the bound token: %v (provider: %s)", err, p.DPoPError())
	}
	// The provider refuses the bound token as a Bearer token (RFC 9449
	// §7.2): what a UserInfo call without the key would send.
	if _, err := c.UserInfo(context.Background(), tok.AccessToken, id.Subject, nil); !errors.Is(err, oidc.ErrTokenNotAccepted) {
		t.Fatalf("userinfo as Bearer: %v, want ErrTokenNotAccepted", err)
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
					} else {
						delete(d, "dpop_signing_alg_values_supported")
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

package oidc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/dpop/dpopverify"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"golang.org/x/oauth2"
)

// dpopAS stands in front of the fake OP's token and PAR endpoints as a
// DPoP authorization server would (RFC 9449 §5, §8, §10.1), on moat's side
// of the wire: each request must carry a proof that dpopverify accepts for
// that endpoint, with the server's nonce when nonces are on; an answer
// with an access token says token_type DPoP unless the mode is "bearer",
// a server that does not bind.
type dpopAS struct {
	base     http.RoundTripper
	verifier *dpopverify.Verifier
	nonces   *dpopverify.Nonces

	mu     sync.Mutex
	mode   string // "" binds; "bearer" answers unbound; "always-nonce" keeps asking
	proofs []seen // every proof that reached the OP, and every refused one
}

type seen struct {
	path, nonce, jkt string
	refused          string // the error code answered instead
}

func newDPoPAS(t *testing.T, nonces bool) *dpopAS {
	t.Helper()
	as := &dpopAS{base: http.DefaultTransport}
	o := dpopverify.Options{}
	if nonces {
		as.nonces = dpopverify.NewNonces(0, nil)
		o.Nonces = as.nonces
	}
	v, err := dpopverify.New(o)
	if err != nil {
		t.Fatal(err)
	}
	as.verifier = v
	return as
}

func (as *dpopAS) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || (!strings.HasSuffix(r.URL.Path, "/token") && !strings.HasSuffix(r.URL.Path, "/par")) {
		return as.base.RoundTrip(r)
	}
	as.mu.Lock()
	mode := as.mode
	as.mu.Unlock()
	u := *r.URL
	u.RawQuery = ""
	p, err := as.verifier.Verify(r.Header.Values("DPoP"), dpopverify.Request{Method: r.Method, URL: u.String()})
	if mode == "always-nonce" && err == nil {
		as.nonces.Rotate()
		err = &dpopverify.Error{Code: "use_dpop_nonce"}
	}
	if err != nil {
		var e *dpopverify.Error
		errors.As(err, &e)
		as.note(seen{path: u.Path, refused: e.Code})
		rec := &recorder{h: http.Header{}}
		dpopverify.WriteToken(rec, err)
		if e.Code == "use_dpop_nonce" {
			rec.h.Set("DPoP-Nonce", as.nonces.Current())
		}
		return rec.response(r), nil
	}
	as.note(seen{path: u.Path, nonce: p.Nonce, jkt: p.JKT})
	resp, err := as.base.RoundTrip(r)
	if err != nil || mode == "bearer" || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if _, ok := body["access_token"]; ok {
		body["token_type"] = "DPoP"
	}
	b, _ := json.Marshal(body)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func (as *dpopAS) note(s seen) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.proofs = append(as.proofs, s)
}

func (as *dpopAS) seen() []seen {
	as.mu.Lock()
	defer as.mu.Unlock()
	out := as.proofs
	as.proofs = nil
	return out
}

func (as *dpopAS) set(mode string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.mode = mode
}

// recorder is the little of an http.ResponseWriter dpopverify's writers use.
type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *recorder) Header() http.Header         { return w.h }
func (w *recorder) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *recorder) WriteHeader(code int)        { w.code = code }
func (w *recorder) response(r *http.Request) *http.Response {
	return &http.Response{StatusCode: w.code, Status: http.StatusText(w.code), Header: w.h, Request: r,
		Body: io.NopCloser(bytes.NewReader(w.body.Bytes())), ContentLength: int64(w.body.Len()), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

func newDPoPClient(t *testing.T, p *oidctest.Provider, as *dpopAS, mod func(*oidc.Config)) *oidc.Client {
	return newClient(t, p, func(c *oidc.Config) {
		c.DPoP = true
		c.HTTPClient = &http.Client{Timeout: 2 * time.Second, Transport: as}
		if mod != nil {
			mod(c)
		}
	})
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
			as := newDPoPAS(t, true)
			c := newDPoPClient(t, p, as, nil)
			key, _ := dpop.NewKey()
			verifier := oauth2.GenerateVerifier()
			u, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier, DPoP: key})
			if err != nil {
				t.Fatal(err)
			}
			var want []seen
			if par {
				// RFC 9449 §10.1: the PAR request carries a proof; the first
				// is refused for its missing nonce, the retry carries it.
				want = append(want, seen{path: "/par", refused: "use_dpop_nonce"}, seen{path: "/par", nonce: as.nonces.Current(), jkt: key.Thumbprint()})
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
				want = append(want, seen{path: "/token", refused: "use_dpop_nonce"})
			}
			want = append(want, seen{path: "/token", nonce: as.nonces.Current(), jkt: key.Thumbprint()})
			// The nonce is remembered: the refresh needs no retry.
			tok, _, err = c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, seen{path: "/token", nonce: as.nonces.Current(), jkt: key.Thumbprint()})
			// A new nonce: the refresh is refused once and retried with it.
			as.nonces.Rotate()
			as.nonces.Rotate()
			next, _, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
			if err != nil {
				t.Fatal(err)
			}
			if next.TokenType != "DPoP" {
				t.Errorf("refreshed token type %q, want DPoP", next.TokenType)
			}
			want = append(want, seen{path: "/token", refused: "use_dpop_nonce"}, seen{path: "/token", nonce: as.nonces.Current(), jkt: key.Thumbprint()})
			got := as.seen()
			for i := range got {
				got[i].path = got[i].path[strings.LastIndex(got[i].path, "/"):]
			}
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

func equalSeen(a, b []seen) bool {
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
		as := newDPoPAS(t, false)
		as.set("bearer")
		c := newDPoPClient(t, p, as, nil)
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
		as := newDPoPAS(t, false)
		c := newDPoPClient(t, p, as, func(c *oidc.Config) { c.Resources = []string{"https://api.example"} })
		key, _ := dpop.NewKey()
		tok, id, err := dpopLogin(t, c, key)
		if err != nil {
			t.Fatal(err)
		}
		as.set("bearer")
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
		as := newDPoPAS(t, true)
		c := newDPoPClient(t, p, as, nil)
		key, _ := dpop.NewKey()
		tok, id, err := dpopLogin(t, c, key)
		if err != nil {
			t.Fatal(err)
		}
		as.seen()
		as.set("always-nonce")
		_, _, err = c.Refresh(context.Background(), tok.RefreshToken, id.Subject, key)
		if !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, oidc.ErrInvalidGrant) {
			t.Fatalf("err = %v, want a transient error that keeps the session", err)
		}
		if n := len(as.seen()); n != 2 {
			t.Fatalf("%d token requests, want 2: one retry, no loop", n)
		}
	})
	t.Run("no key with oidc.dpop", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		as := newDPoPAS(t, false)
		c := newDPoPClient(t, p, as, nil)
		if _, err := c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "s", Nonce: "n", Verifier: oauth2.GenerateVerifier()}); err == nil {
			t.Error("login started without a DPoP key")
		}
		if _, _, err := c.Refresh(context.Background(), "rt", "alice", nil); err == nil {
			t.Error("refresh sent without a DPoP key")
		}
		if got := as.seen(); len(got) != 0 {
			t.Errorf("requests reached the token endpoint: %+v", got)
		}
	})
	t.Run("Bearer login without oidc.dpop sends no proof", func(t *testing.T) {
		p := oidctest.New(t, redirect)
		as := newDPoPAS(t, false)
		c := newClient(t, p, func(c *oidc.Config) { c.HTTPClient = &http.Client{Transport: as} })
		tok, _, err := login(t, c, "n-1")
		if err == nil || tok.AccessToken != "" {
			t.Fatalf("the DPoP server took a request without a proof: %v", err)
		}
		if got := as.seen(); len(got) != 1 || got[0].refused != "invalid_dpop_proof" {
			t.Fatalf("proofs %+v, want one refused for lacking a proof", got)
		}
	})
}

// TestDPoPUserInfo: a bound token goes to UserInfo with a proof for it.
func TestDPoPUserInfo(t *testing.T) {
	p := oidctest.New(t, redirect)
	as := newDPoPAS(t, false)
	var got http.Header
	c := newDPoPClient(t, p, as, func(c *oidc.Config) {
		c.HTTPClient.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/userinfo") {
				got = r.Header.Clone()
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(r.Header.Get("Authorization"), "DPoP "))
			}
			return as.RoundTrip(r)
		})
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

package oidc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/moat-bff/moat/internal/clientauth"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// jarKeys returns client keys for request objects and the raw key.
func jarKeys(t *testing.T) (*clientauth.Keys, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "jar-1", Algorithm: "ES256"}}})
	ks, err := clientauth.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return ks, k
}

// audSigner signs with the right key for the wrong audience.
type audSigner struct {
	*clientauth.Keys
	aud string
}

func (s audSigner) RequestObject(clientID, _ string, params url.Values, now time.Time) (string, error) {
	return s.Keys.RequestObject(clientID, s.aud, params, now)
}

// typSigner signs a request object that is complete but for its typ: a
// plain JWT signed by the same key could be any other token.
type typSigner struct {
	*clientauth.Keys
	key *ecdsa.PrivateKey
}

func (s typSigner) RequestObject(clientID, aud string, params url.Values, now time.Time) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.key, KeyID: "jar-1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	c := map[string]any{"iss": clientID, "aud": aud, "exp": now.Add(time.Minute).Unix(), "nbf": now.Unix(), "jti": now.String()}
	for k := range params {
		c[k] = params.Get(k)
	}
	return jwt.Signed(sig).Claims(c).Serialize()
}

// TestRequestObject: with RequestObjects every authorization parameter
// travels in a signed request object, by value or pushed, and the
// in-process OP (which verifies request objects as RFC 9101 §6 asks)
// refuses each broken one.
func TestRequestObject(t *testing.T) {
	ks, raw := jarKeys(t)
	other, _ := jarKeys(t)
	for _, tc := range []struct {
		name   string
		par    bool
		signer oidc.RequestObjectSigner
		now    time.Time          // the client's clock; zero: now
		tamper func(q url.Values) // the browser's URL
		twice  bool               // follow the URL a second time
		want   string             // the OP's refusal; "" logs in
	}{
		{name: "by value", signer: ks},
		{name: "pushed", par: true, signer: ks},
		{name: "a key the OP does not know", signer: other, want: "signature"},
		{name: "pushed with a key the OP does not know", par: true, signer: other, want: "signature"},
		{name: "wrong aud", signer: audSigner{ks, "https://other.example"}, want: "aud"},
		{name: "expired", signer: ks, now: time.Now().Add(-10 * time.Minute), want: "expired"},
		{name: "typ is not oauth-authz-req+jwt", signer: typSigner{ks, raw}, want: "typ"},
		{name: "scope outside differs", signer: ks, tamper: func(q url.Values) { q.Set("scope", "openid email") }, want: "scope outside"},
		{name: "state added outside", signer: ks, tamper: func(q url.Values) { q.Set("state", "attacker") }, want: "state outside"},
		{name: "replayed", signer: ks, twice: true, want: "replayed jti"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.New(t, redirect)
			p.RequireRequestObjects(ks.Public())
			p.Set(func(b *oidctest.Behavior) { b.PAR = tc.par })
			c := newClient(t, p, func(cfg *oidc.Config) {
				cfg.RequestObjects = tc.signer
				if !tc.now.IsZero() {
					cfg.Now = func() time.Time { return tc.now }
				}
			})
			verifier := oauth2.GenerateVerifier()
			req := oidc.AuthRequest{State: "st", Nonce: "n-1", Verifier: verifier, Extra: url.Values{"max_age": {"300"}}}
			u, err := c.AuthCodeURL(context.Background(), req)
			if tc.par && tc.want != "" {
				if !errors.Is(err, oidc.ErrRejected) || !strings.Contains(p.RequestObjectError(), tc.want) {
					t.Fatalf("AuthCodeURL = %v, OP: %q; want a refusal for %q", err, p.RequestObjectError(), tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pu, _ := url.Parse(u)
			q := pu.Query()
			wantOutside := []string{"client_id", "request", "response_type", "scope"}
			if tc.par {
				wantOutside = []string{"client_id", "request_uri"}
				reqs := p.Requests()
				form := reqs[len(reqs)-1].Form
				if keys := slices.Sorted(func(yield func(string) bool) {
					for k := range form {
						if !yield(k) {
							return
						}
					}
				}); !slices.Equal(keys, []string{"request"}) {
					t.Errorf("pushed form has %q, want only request (client_secret_basic authenticates in a header)", keys)
				}
			}
			var outside []string
			for k := range q {
				outside = append(outside, k)
			}
			slices.Sort(outside)
			if !slices.Equal(outside, wantOutside) {
				t.Errorf("browser URL carries %q, want %q", outside, wantOutside)
			}
			if tc.tamper != nil {
				tc.tamper(q)
				pu.RawQuery = q.Encode()
			}
			resp := follow(t, pu.String())
			if tc.twice {
				resp = follow(t, pu.String())
			}
			if tc.want != "" {
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(p.RequestObjectError(), tc.want) {
					t.Fatalf("authorize: %s, OP: %q; want a refusal for %q", resp.Status, p.RequestObjectError(), tc.want)
				}
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "st" {
				t.Fatalf("authorize: %s %s (OP: %q)", resp.Status, loc, p.RequestObjectError())
			}
			maxAge := 300
			if _, id, err := c.Exchange(context.Background(), loc.Query().Get("code"), oidc.Expect{Verifier: verifier, Nonce: "n-1", MaxAge: &maxAge}); err != nil || id.Subject != "alice" {
				t.Fatalf("exchange: %v", err)
			}
		})
	}
}

func follow(t *testing.T, u string) *http.Response {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestRequestObjectDiscovery: a provider whose discovery document does not
// list the key's algorithm for request objects fails every login with an
// error naming oidc.request_object, and Mismatches (moat check, /readyz)
// says so; one that lists it passes.
func TestRequestObjectDiscovery(t *testing.T) {
	ks, _ := jarKeys(t)
	for _, tc := range []struct {
		name string
		algs []string // nil: not advertised at all
		keys bool
		ok   bool
	}{
		{name: "not advertised"},
		{name: "RS256 only", algs: []string{"RS256"}},
		{name: "ES256 advertised", keys: true, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.New(t, redirect)
			p.Set(func(b *oidctest.Behavior) { b.RequestObjectAlgs = tc.algs })
			if tc.keys {
				p.RequireRequestObjects(ks.Public())
			}
			c := newClient(t, p, func(cfg *oidc.Config) { cfg.RequestObjects = ks })
			meta, err := c.Discover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			m := c.Mismatches(meta)
			_, err = c.AuthCodeURL(context.Background(), oidc.AuthRequest{State: "s", Nonce: "n", Verifier: oauth2.GenerateVerifier()})
			if tc.ok {
				if len(m) > 0 || err != nil {
					t.Fatalf("mismatches %q, AuthCodeURL %v", m, err)
				}
				return
			}
			if len(m) != 1 || !strings.HasPrefix(m[0], "oidc.request_object: ") || !strings.Contains(m[0], "ES256") {
				t.Errorf("mismatches %q", m)
			}
			if err == nil || !strings.HasPrefix(err.Error(), "oidc.request_object: ") {
				t.Errorf("AuthCodeURL = %v", err)
			}
		})
	}
}

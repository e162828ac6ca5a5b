package oidc_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// FuzzVerifyLogoutToken feeds the back-channel logout token validator
// arbitrary input: it must never panic, and nothing but a token the OP
// really signed may pass (Back-Channel Logout 1.0 §2.6).
func FuzzVerifyLogoutToken(f *testing.F) {
	p := oidctest.New(f, redirect)
	c := newClientTB(f, p)
	valid := p.LogoutToken("alice", "sid-1", nil)
	claims := map[string]any{"iss": p.Issuer, "aud": p.ClientID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		"jti": "j", "sub": "alice", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	for _, seed := range []string{
		valid, "", ".", "..", "a.b.c", oidctest.SignNone(claims), oidctest.SignHS256(p.ClientSecret, claims),
		oidctest.SignWith(oidctest.NewKey(p.CurrentKeyID()), "logout+jwt", claims),
		valid[:len(valid)-3], valid + "A", "eyJhbGciOiJub25lIn0.e30.",
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	if _, err := c.Discover(ctx); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		lt, err := c.VerifyLogoutToken(ctx, raw)
		if err == nil && raw != valid {
			t.Fatalf("accepted a token the OP did not issue: %q -> %+v", raw, lt)
		}
	})
}

// Logout tokens with unknown kids cost the IdP at most one JWKS fetch per
// 10 s across the process, however many arrive and however concurrently;
// each is a 503-class error (the OP may retry), never accepted.
func TestUnknownKidRefetchesJWKSAtMostOncePerInterval(t *testing.T) {
	p := oidctest.New(t, redirect)
	clk := &testClock{now: time.Now()}
	c := newClient(t, p, func(c *oidc.Config) { c.Now = clk.Now })
	ctx := context.Background()
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "", nil)); err != nil {
		t.Fatal(err) // the first fetch
	}
	claims := map[string]any{"iss": p.Issuer, "aud": p.ClientID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
		"jti": "j", "sub": "alice", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	forged := func(i int) string {
		return oidctest.SignWith(oidctest.NewKey(fmt.Sprintf("evil-%d", i)), "logout+jwt", claims)
	}
	tokens := make([]string, 40)
	for i := range tokens {
		tokens[i] = forged(i)
	}
	round := func() {
		var wg sync.WaitGroup
		for _, tok := range tokens {
			wg.Go(func() {
				if _, err := c.VerifyLogoutToken(ctx, tok); err == nil || !errors.Is(err, oidc.ErrUnavailable) && !errors.Is(err, oidc.ErrRejected) {
					t.Errorf("forged token: %v", err)
				}
			})
		}
		wg.Wait()
	}
	clk.Advance(10 * time.Second)
	round()
	if n := jwksFetches(p); n != 2 {
		t.Errorf("%d JWKS fetches after 40 unknown kids, want 2 (the first and one refetch)", n)
	}
	clk.Advance(5 * time.Second)
	round()
	if n := jwksFetches(p); n != 2 {
		t.Errorf("%d JWKS fetches 5 s later, want still 2", n)
	}
	clk.Advance(5 * time.Second)
	round()
	if n := jwksFetches(p); n != 3 {
		t.Errorf("%d JWKS fetches 10 s after the refetch, want 3", n)
	}
	// The genuine key still verifies without a fetch.
	if _, err := c.VerifyLogoutToken(ctx, p.LogoutToken("alice", "", nil)); err != nil {
		t.Errorf("genuine token: %v", err)
	}
	if n := jwksFetches(p); n != 3 {
		t.Errorf("a known kid fetched the JWKS: %d", n)
	}
}

package oidc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/testclock"
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
// each is rejected (400, Back-Channel Logout §2.8), never accepted, and is
// an outage (503) only while the JWKS cannot be fetched.
func TestUnknownKidRefetchesJWKSAtMostOncePerInterval(t *testing.T) {
	p := oidctest.New(t, redirect)
	clk := testclock.New(time.Now())
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
				if _, err := c.VerifyLogoutToken(ctx, tok); !errors.Is(err, oidc.ErrRejected) || errors.Is(err, oidc.ErrUnavailable) {
					t.Errorf("forged token with a reachable JWKS: %v, want rejected", err)
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
	// The JWKS broken: an unknown kid cannot be judged, now or within the
	// interval after the failed fetch.
	p.Set(func(b *oidctest.Behavior) { b.Garbage = "/jwks" })
	for _, d := range []time.Duration{10 * time.Second, 5 * time.Second} {
		clk.Advance(d)
		if _, err := c.VerifyLogoutToken(ctx, forged(99)); !errors.Is(err, oidc.ErrUnavailable) {
			t.Errorf("unknown kid while the JWKS is broken: %v, want ErrUnavailable", err)
		}
	}
}

// hydraLogoutClaims are the claims of an Ory Hydra 2.x logout token: the
// Back-Channel Logout drafts before 2022, with sid but neither sub nor exp.
func hydraLogoutClaims(p *oidctest.Provider, now time.Time) map[string]any {
	return map[string]any{"iss": p.Issuer, "aud": []string{p.ClientID}, "iat": now.Unix(), "jti": fmt.Sprint("j-", now.UnixNano()),
		"sid": "sid-1", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
}

// TestLegacyLogoutTokens: with LegacyLogoutTokens, a token typed JWT or
// without exp passes, valid until its iat window ends; every other rule of
// §2.6 still holds on that path. Without it, both are refused, naming the
// key that accepts them.
func TestLegacyLogoutTokens(t *testing.T) {
	p := oidctest.New(t, redirect)
	now := time.Now()
	legacy := newClient(t, p, func(c *oidc.Config) { c.LegacyLogoutTokens = true })
	strict := newClient(t, p, nil)
	ctx := context.Background()
	with := func(f func(map[string]any)) map[string]any {
		c := hydraLogoutClaims(p, now)
		f(c)
		return c
	}
	accepted := map[string]string{
		"Hydra's token (typ JWT, no exp)": p.SignWithCurrentKey(hydraLogoutClaims(p, now)),
		"typ logout+jwt, no exp":          p.SignTyped("logout+jwt", hydraLogoutClaims(p, now)),
		"typ JWT with exp":                p.SignWithCurrentKey(with(func(c map[string]any) { c["exp"] = now.Add(time.Minute).Unix() })),
	}
	for name, tok := range accepted {
		lt, err := legacy.VerifyLogoutToken(ctx, tok)
		if err != nil {
			t.Errorf("legacy: %s refused: %v", name, err)
			continue
		}
		if want := time.Unix(now.Unix(), 0).Add(11 * time.Minute); name != "typ JWT with exp" && !lt.Expiry.Equal(want) {
			t.Errorf("legacy: %s: Expiry %v, want iat + max_id_token_age + clock_skew = %v", name, lt.Expiry, want)
		}
		if lt.SID != "sid-1" {
			t.Errorf("legacy: %s: sid %q", name, lt.SID)
		}
		if _, err := strict.VerifyLogoutToken(ctx, tok); err == nil || !strings.Contains(err.Error(), "oidc.insecure_legacy_logout_tokens") {
			t.Errorf("strict: %s: %v, want a refusal naming oidc.insecure_legacy_logout_tokens", name, err)
		}
	}
	refused := map[string]string{
		"nonce":          p.SignWithCurrentKey(with(func(c map[string]any) { c["nonce"] = "n" })),
		"no jti":         p.SignWithCurrentKey(with(func(c map[string]any) { delete(c, "jti") })),
		"no sub nor sid": p.SignWithCurrentKey(with(func(c map[string]any) { delete(c, "sid") })),
		"no events":      p.SignWithCurrentKey(with(func(c map[string]any) { delete(c, "events") })),
		"event not an object": p.SignWithCurrentKey(with(func(c map[string]any) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": "yes"}
		})),
		"iat an hour old": p.SignWithCurrentKey(with(func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() })),
		"no iat":          p.SignWithCurrentKey(with(func(c map[string]any) { delete(c, "iat") })),
		"wrong aud":       p.SignWithCurrentKey(with(func(c map[string]any) { c["aud"] = "other" })),
		"untrusted aud":   p.SignWithCurrentKey(with(func(c map[string]any) { c["aud"] = []string{p.ClientID, "other"} })),
		"wrong iss":       p.SignWithCurrentKey(with(func(c map[string]any) { c["iss"] = "https://evil.example" })),
		"expired exp":     p.SignWithCurrentKey(with(func(c map[string]any) { c["exp"] = now.Add(-5 * time.Minute).Unix() })),
		"exp null":        p.SignWithCurrentKey(with(func(c map[string]any) { c["exp"] = nil })),
		"typ at+jwt":      p.SignTyped("at+jwt", hydraLogoutClaims(p, now)),
		"foreign key":     oidctest.SignWith(oidctest.NewKey(p.CurrentKeyID()), "JWT", hydraLogoutClaims(p, now)),
		"alg none":        oidctest.SignNone(hydraLogoutClaims(p, now)),
		"HS256":           oidctest.SignHS256(p.ClientSecret, hydraLogoutClaims(p, now)),
	}
	for name, tok := range refused {
		if lt, err := legacy.VerifyLogoutToken(ctx, tok); err == nil {
			t.Errorf("legacy: %s accepted: %+v", name, lt)
		}
	}
}

// FuzzVerifyLegacyLogoutToken is FuzzVerifyLogoutToken for the path of
// tokens without exp (LegacyLogoutTokens): only the OP's token passes.
func FuzzVerifyLegacyLogoutToken(f *testing.F) {
	p := oidctest.New(f, redirect)
	c := newClientWith(f, p, func(c *oidc.Config) { c.LegacyLogoutTokens = true })
	claims := hydraLogoutClaims(p, time.Now())
	valid := p.SignWithCurrentKey(claims)
	claims["nonce"] = "n"
	for _, seed := range []string{
		valid, "", "a.b.c", oidctest.SignNone(claims), oidctest.SignHS256(p.ClientSecret, claims), p.SignWithCurrentKey(claims),
		oidctest.SignWith(oidctest.NewKey(p.CurrentKeyID()), "JWT", claims), valid[:len(valid)-3], valid + "A",
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

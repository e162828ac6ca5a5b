package oidc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/testclock"
)

// Once the token endpoint answered 200, the rotated refresh token is never
// thrown away: an ID token that fails validation (JWKS down at a key
// rotation, at_hash, iat) leaves the new tokens usable and the identity
// unset; the next refresh with the new refresh token works, so the IdP's
// reuse detection never fires.
func TestRefreshKeepsTheNewTokensWhenTheIDTokenFails(t *testing.T) {
	cases := []struct {
		name string
		brk  func(p *oidctest.Provider, clk *testclock.Clock)
	}{
		{"JWKS down at a key rotation", func(p *oidctest.Provider, clk *testclock.Clock) {
			p.RotateKey()
			p.Set(func(b *oidctest.Behavior) { b.Garbage = "/jwks" })
			clk.Advance(10 * time.Second)
		}},
		{"wrong at_hash", func(p *oidctest.Provider, _ *testclock.Clock) {
			p.Set(func(b *oidctest.Behavior) {
				b.MutateIDToken = func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }
			})
		}},
		{"iat too old", func(p *oidctest.Provider, _ *testclock.Clock) {
			p.Set(func(b *oidctest.Behavior) {
				b.MutateIDToken = func(c map[string]any) { c["iat"] = time.Now().Add(-24 * time.Hour).Unix() }
			})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.New(t, redirect)
			clk := testclock.New(time.Now())
			c := newClient(t, p, func(c *oidc.Config) { c.Now = clk.Now })
			tok, id, err := login(t, c, "n-1")
			if err != nil {
				t.Fatal(err)
			}
			tc.brk(p, clk)
			ctx := context.Background()
			next, nid, err := c.Refresh(ctx, tok.RefreshToken, id.Subject, nil)
			if err != nil {
				t.Fatalf("refresh answered 200 but failed: %v", err)
			}
			if nid != nil || next.IDToken != "" {
				t.Errorf("an unvalidated ID token was returned: %v %q", nid, next.IDToken)
			}
			if next.AccessToken == "" || next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken || next.RefreshToken == "" {
				t.Fatalf("the new tokens were not returned: %+v", next)
			}
			if _, ok := p.ValidAccessToken(next.AccessToken); !ok {
				t.Error("the new access token is not live")
			}
			p.Set(func(b *oidctest.Behavior) { b.Garbage = ""; b.MutateIDToken = nil })
			clk.Advance(10 * time.Second) // past the JWKS refetch bound
			_, again, err := c.Refresh(ctx, next.RefreshToken, id.Subject, nil)
			if err != nil || again == nil || again.Subject != "alice" {
				t.Fatalf("the next refresh with the rotated token: %v, %v", again, err)
			}
		})
	}
}

// A validated ID token for another subject ends the session: the refresh
// fails with ErrSubjectChanged and the new refresh token is revoked.
func TestRefreshWithAnotherSubjectRevokesTheNewToken(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newClient(t, p, nil)
	tok, id, err := login(t, c, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	p.Set(func(b *oidctest.Behavior) { b.MutateIDToken = func(c map[string]any) { c["sub"] = "mallory" } })
	next, nid, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, nil)
	if !errors.Is(err, oidc.ErrSubjectChanged) || nid != nil || next.AccessToken != "" {
		t.Fatalf("refresh = %+v, %v, %v; want ErrSubjectChanged and nothing else", next, nid, err)
	}
	var revoked string
	for _, r := range p.Requests() {
		if r.Path == "/revoke" && r.Form.Get("token_type_hint") == "refresh_token" {
			revoked = r.Form.Get("token")
		}
	}
	if revoked == "" || revoked == tok.RefreshToken {
		t.Fatalf("revoked %q, want the new refresh token", revoked)
	}
	p.Set(func(b *oidctest.Behavior) { b.MutateIDToken = nil })
	if _, _, err := c.Refresh(context.Background(), revoked, id.Subject, nil); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("the revoked refresh token still works: %v", err)
	}
}

// Without rotation the refresh token the IdP answered for another subject
// is the session's own: it is revoked all the same, as the session ends.
func TestRefreshWithAnotherSubjectRevokesAnUnrotatedToken(t *testing.T) {
	p := oidctest.New(t, redirect)
	p.Set(func(b *oidctest.Behavior) { b.RotateRefreshTokens = false })
	c := newClient(t, p, nil)
	tok, id, err := login(t, c, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	p.Set(func(b *oidctest.Behavior) { b.MutateIDToken = func(c map[string]any) { c["sub"] = "mallory" } })
	if _, _, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, nil); !errors.Is(err, oidc.ErrSubjectChanged) {
		t.Fatalf("refresh: %v, want ErrSubjectChanged", err)
	}
	revoked := false
	for _, r := range p.Requests() {
		revoked = revoked || r.Path == "/revoke" && r.Form.Get("token") == tok.RefreshToken
	}
	if !revoked {
		t.Error("the refresh token was not revoked")
	}
	p.Set(func(b *oidctest.Behavior) { b.MutateIDToken = nil })
	if _, _, err := c.Refresh(context.Background(), tok.RefreshToken, id.Subject, nil); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("the refresh token of the changed subject still works: %v", err)
	}
}

// UserInfo's 401 and 403 mean the access token is not accepted there, not
// an outage.
func TestUserInfoRefusals(t *testing.T) {
	p := oidctest.New(t, redirect)
	c := newClient(t, p, nil)
	tok, id, err := login(t, c, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status int
		want   error
	}{{401, oidc.ErrTokenNotAccepted}, {403, oidc.ErrTokenNotAccepted}, {500, oidc.ErrUnavailable}, {502, oidc.ErrUnavailable}, {404, oidc.ErrUnavailable}} {
		p.Set(func(b *oidctest.Behavior) { b.UserInfoStatus = tc.status })
		_, err := c.UserInfo(context.Background(), tok.AccessToken, id.Subject, nil)
		if !errors.Is(err, tc.want) || tc.want == oidc.ErrTokenNotAccepted && errors.Is(err, oidc.ErrUnavailable) {
			t.Errorf("%d: %v, want %v", tc.status, err, tc.want)
		}
	}
	p.Set(func(b *oidctest.Behavior) { b.UserInfoStatus = 0 })
	if _, err := c.UserInfo(context.Background(), "at-unknown", id.Subject, nil); !errors.Is(err, oidc.ErrTokenNotAccepted) {
		t.Errorf("unknown access token: %v, want ErrTokenNotAccepted", err)
	}
}

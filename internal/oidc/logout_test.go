package oidc_test

import (
	"context"
	"testing"
	"time"

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

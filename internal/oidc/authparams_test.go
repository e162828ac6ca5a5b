package oidc_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// TestAuthParams: oidc.auth_params reach the authorization request, in the
// browser's URL and in a pushed request, but never replace a parameter moat
// sets (state, nonce, PKCE, redirect_uri...) or one the login asked for.
func TestAuthParams(t *testing.T) {
	params := map[string]string{
		"audience": "https://api.example.com", "access_type": "offline", "prompt": "consent",
		// config validation refuses these; the client must not obey them either
		"state": "fixed", "nonce": "fixed", "redirect_uri": "https://evil.example", "code_challenge": "x",
	}
	for _, par := range []bool{false, true} {
		p := oidctest.New(t, redirect)
		p.Set(func(b *oidctest.Behavior) { b.PAR = par })
		c := newClient(t, p, func(cfg *oidc.Config) { cfg.AuthParams = params })
		for _, prompt := range []string{"", "login"} {
			req := oidc.AuthRequest{State: "st", Nonce: "no", Verifier: "verifier-verifier-verifier-verifier-verifier", Extra: url.Values{}}
			if prompt != "" {
				req.Extra.Set("prompt", prompt)
			}
			u, err := c.AuthCodeURL(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			q := mustQuery(t, u)
			if par {
				reqs := p.Requests()
				last := reqs[len(reqs)-1]
				if last.Path != "/par" || q.Get("request_uri") == "" || q.Has("audience") {
					t.Fatalf("not pushed: %s", u)
				}
				q = last.Form
			}
			want := map[string]string{
				"audience": "https://api.example.com", "access_type": "offline", "prompt": "consent",
				"state": "st", "nonce": "no", "redirect_uri": redirect,
			}
			if prompt != "" {
				want["prompt"] = prompt
			}
			for k, v := range want {
				if got := q[k]; len(got) != 1 || got[0] != v {
					t.Errorf("par=%v prompt=%q: %s = %q, want %q", par, prompt, k, got, v)
				}
			}
			if q.Get("code_challenge") == "x" {
				t.Errorf("par=%v: auth_params replaced the PKCE challenge", par)
			}
		}
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/realop"
	"github.com/moat-bff/moat/internal/session"
)

// TestRealOPDPoP: moat with oidc.dpop against the real oidc-provider, whose
// client is registered with dpop_bound_access_tokens (no token without a
// proof), and an upstream that verifies every proof and the token's
// cnf.jkt (realop.Upstream): login, UserInfo, an API call, a forced
// refresh whose new token is bound to the same key, logout with the
// refresh token revoked and the provider session ended, and the old
// cookie refused afterwards. Once under FAPI 2.0 (oidc-provider's FAPI 2.0
// profile, PAR required, ES256 ID tokens; moat's oidc.profile fapi2), once
// with nonces demanded by both the provider and the upstream, and once
// with private_key_jwt alone, no profile.
func TestRealOPDPoP(t *testing.T) {
	fapi2 := realop.Options{FAPI2: true, RequirePAR: true, IDTokenSigningAlg: "ES256"}
	nonces := fapi2
	nonces.DPoPRequireNonce = true
	for _, tc := range []struct {
		name  string
		opts  realop.Options
		fapi2 bool
	}{
		{"fapi2", fapi2, true},
		{"fapi2 with nonces", nonces, true},
		{"private_key_jwt alone", realop.Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) { realOPDPoP(t, tc.opts, tc.fapi2) })
	}
}

func realOPDPoP(t *testing.T, opts realop.Options, fapi2 bool) {
	path, ks := keyFile(t, "ES256")
	jwks, _ := json.Marshal(ks.Public())
	opts.DPoP, opts.ClientAuthMethod, opts.ClientJWKS = true, config.AuthPrivateKeyJWT, jwks
	var up *realop.Upstream
	e := newRealEnv(t, opts, func(e *realEnv, c *config.Config) {
		c.OIDC.ClientSecret = ""
		c.OIDC.ClientAuthMethod = config.AuthPrivateKeyJWT
		c.OIDC.ClientKeyFile = path
		c.OIDC.DPoP = true
		if fapi2 {
			c.OIDC.Profile = config.ProfileFAPI2
		}
		up = e.op.DPoPUpstream(t, opts.DPoPRequireNonce)
		c.Routes = []config.Route{{Prefix: "/resource/api/", Upstream: up.URL + "/api/"}}
	})
	if err := e.gw.Check(t.Context()); err != nil {
		t.Fatalf("moat check: %v", err)
	}
	ua := e.op.UserAgent("alice")
	e.login(t, ua)

	call := func(what string) realop.Seen {
		t.Helper()
		n := len(up.Seen())
		if r := e.api(t, ua, http.MethodGet, "/resource/api/orders?page=1"); r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s; upstream refused %v\n%s", what, r.Status, r.Body, up.Refused(), e.op.Stderr())
		}
		seen := up.Seen()
		if len(seen) != n+1 || seen[n].Path != "/api/orders" {
			t.Fatalf("%s: upstream saw %+v", what, seen)
		}
		tok := e.tokens(t, ua)
		if seen[n].Token != tok.AccessToken {
			t.Fatalf("%s: the upstream got another token than the session's", what)
		}
		jkt, err := e.op.DPoPBinding(context.Background(), tok.AccessToken)
		if err != nil || jkt == "" || jkt != seen[n].JKT {
			t.Fatalf("%s: token cnf.jkt %q (%v), proof key %q", what, jkt, err, seen[n].JKT)
		}
		return seen[n]
	}
	first := call("API call")
	if opts.DPoPRequireNonce {
		// The provider refused the first pushed request for want of its
		// nonce, and the upstream the first call: moat retried each once.
		if !strings.Contains(e.op.Stderr(), "pushed_authorization_request.error: use_dpop_nonce") {
			t.Fatalf("the provider never asked for its nonce:\n%s", e.op.Stderr())
		}
		if first.Proof.Nonce != up.Nonces.Current() || len(up.Refused()) != 1 || !strings.Contains(up.Refused()[0], "use_dpop_nonce") {
			t.Fatalf("nonce: proof carried %q, upstream's %q; refused %v", first.Proof.Nonce, up.Nonces.Current(), up.Refused())
		}
	} else if len(up.Refused()) != 0 {
		t.Fatalf("upstream refused %v", up.Refused())
	}
	if ui := e.api(t, ua, http.MethodGet, "/auth/userinfo"); ui.Status != http.StatusOK || !strings.Contains(string(ui.Body), "alice@example.test") {
		t.Fatalf("userinfo with a DPoP-bound token: %d %s\n%s", ui.Status, ui.Body, e.op.Stderr())
	}
	before := e.tokens(t, ua)
	e.expire(t, ua)
	second := call("API call after a forced refresh")
	after := e.tokens(t, ua)
	if after.AccessToken == before.AccessToken {
		t.Fatal("no refresh happened")
	}
	if second.JKT != first.JKT {
		t.Fatalf("the refreshed token is bound to %q, the first to %q: the session's key changed", second.JKT, first.JKT)
	}

	cookie := e.sessionCookie(ua)
	e.logoutThroughProvider(t, ua)
	e.waitInactive(t, after.RefreshToken)
	// The cookie a thief kept from before the logout opens nothing.
	replay, _ := http.NewRequest(http.MethodGet, e.url+"/resource/api/orders", nil)
	replay.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	replay.AddCookie(&http.Cookie{Name: session.CookieName, Value: cookie})
	resp, err := http.DefaultClient.Do(replay)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the replayed cookie after logout: %s", resp.Status)
	}
	if n := len(up.Seen()); n != 2 {
		t.Fatalf("upstream let %d calls through, want 2", n)
	}
}

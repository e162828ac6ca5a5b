package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/hydraop"
	"github.com/moat-bff/moat/internal/realop"
	"github.com/moat-bff/moat/internal/session"
)

// hydraEnv is moat in front of Ory Hydra, with the upstream checking each
// Bearer by introspection at Hydra's admin API.
type hydraEnv struct {
	*realEnv
	hy *hydraop.OP
}

// newHydraEnv starts Hydra and moat, configured as docs/providers.md says:
// the scopes of the registered client (offline_access for refresh tokens)
// and oidc.insecure_legacy_logout_tokens.
func newHydraEnv(t *testing.T, opts hydraop.Options, mods ...any) *hydraEnv {
	t.Helper()
	hydraop.Require(t)
	e, ln := listenMoat(t, mods...)
	opts.RedirectURIs = []string{e.url + "/auth/callback"}
	opts.PostLogoutRedirectURIs = []string{e.url + "/logged-out"}
	opts.BackchannelLogoutURI = e.url + "/auth/backchannel-logout"
	hy := hydraop.Start(t, opts)
	introspect := func(at string) (string, bool) {
		out, err := hy.Introspect(context.Background(), at)
		if err != nil {
			t.Errorf("introspection: %v", err)
			return "", false
		}
		sub, _ := out["sub"].(string)
		active, _ := out["active"].(bool)
		return sub, active && out["token_use"] == "access_token"
	}
	// docs/providers.md's configuration for Hydra.
	documented := func(c *config.Config) {
		c.OIDC.Scopes = strings.Fields(hydraop.Scope)
		c.OIDC.InsecureLegacyLogoutTokens = true
	}
	e.startMoat(t, ln, provider{issuer: hy.Issuer, clientID: hy.ClientID, clientSecret: hy.ClientSecret},
		introspect, append([]any{documented}, mods...)...)
	return &hydraEnv{realEnv: e, hy: hy}
}

// active reports whether Hydra still honours token (RFC 7662).
func (e *hydraEnv) active(t *testing.T, token string) bool {
	t.Helper()
	out, err := e.hy.Introspect(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	active, _ := out["active"].(bool)
	return active
}

// backchannelFailed is what Hydra logs when a client's back-channel logout
// URI does not answer 200 or 204.
const backchannelFailed = "Unable to execute OpenID Connect Back-Channel Logout Request"

// TestHydraFullFlow runs moat's life cycle against Ory Hydra: login (code
// with PKCE; Hydra has no PAR), profile claims from the consent app, an API
// call whose Bearer the upstream verifies at Hydra, a refresh (Hydra
// rotates the refresh token and kills the used one), and RP-initiated
// logout through Hydra's logout app back to the post_logout_redirect_uri,
// with the refresh token revoked and Hydra's session gone.
func TestHydraFullFlow(t *testing.T) {
	e := newHydraEnv(t, hydraop.Options{})
	ua := e.hy.UserAgent("alice")
	e.login(t, ua)
	if !hopsContain(ua.Hops, e.hy.Issuer, "/oauth2/auth") || !slices.Equal(e.hy.SignIns(), []string{"alice"}) {
		t.Fatalf("login did not go through Hydra's sign-in: hops %v, sign-ins %v", ua.Hops, e.hy.SignIns())
	}

	cs := e.api(t, ua, http.MethodGet, "/auth/checksession")
	if !e.loggedIn(t, ua) || !strings.Contains(string(cs.Body), `"alice"`) {
		t.Fatalf("checksession: %d %s", cs.Status, cs.Body)
	}
	ui := e.api(t, ua, http.MethodGet, "/auth/userinfo")
	if ui.Status != http.StatusOK || !strings.Contains(string(ui.Body), "alice@example.test") {
		t.Fatalf("userinfo: %d %s", ui.Status, ui.Body)
	}

	first := e.tokens(t, ua)
	if first.RefreshToken == "" {
		t.Fatal("Hydra issued no refresh token for offline_access")
	}
	r := e.api(t, ua, http.MethodGet, "/resource/api/orders")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"alice"`) {
		t.Fatalf("API call: %d %s", r.Status, r.Body)
	}
	if got := e.lastBearer(); got != "Bearer "+first.AccessToken {
		t.Fatalf("upstream got %.20q, want the session's access token", got)
	}

	e.expire(t, ua)
	r = e.api(t, ua, http.MethodGet, "/resource/api/orders")
	if r.Status != http.StatusOK {
		t.Fatalf("API call after expiry: %d %s", r.Status, r.Body)
	}
	second := e.tokens(t, ua)
	if second.AccessToken == first.AccessToken || e.lastBearer() != "Bearer "+second.AccessToken {
		t.Fatal("the upstream did not get a refreshed access token")
	}
	// Hydra rotates refresh tokens: moat must keep the new one, since the
	// used one is dead.
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("Hydra did not rotate the refresh token, or moat did not keep the new one")
	}
	if e.active(t, first.RefreshToken) || e.active(t, first.AccessToken) {
		t.Fatal("the refresh token used (or its access token) is still active at Hydra")
	}

	e.logoutThroughProvider(t, ua)
	if !hopsContain(ua.Hops, e.hy.Issuer, "/oauth2/sessions/logout") || !hopsContain(ua.Hops, e.hy.App, "/logout") {
		t.Fatalf("logout did not pass Hydra's end_session_endpoint and logout app: %v", ua.Hops)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.active(t, second.RefreshToken) {
		if time.Now().After(deadline) {
			t.Fatal("the refresh token is still active at Hydra after logout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Hydra also sends moat a logout token for the session it has just
	// ended (moat's is gone already: 200 all the same).
	deadline = time.Now().Add(5 * time.Second)
	for len(backchannelLogLines(e.logs.String())) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Hydra sent no back-channel logout token after the RP-initiated logout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Hydra's session ended too: the next login shows the sign-in form.
	e.login(t, ua)
	if got := e.hy.SignIns(); !slices.Equal(got, []string{"alice", "alice"}) {
		t.Fatalf("Hydra's session survived the logout: sign-ins %v", got)
	}
	if strings.Contains(e.hy.Log(), backchannelFailed) {
		t.Fatal("Hydra could not deliver its logout token to moat")
	}
}

// backchannelLogLines are moat's audit lines for back-channel logouts it
// carried out.
func backchannelLogLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"event":"backchannel_logout"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestHydraBackchannelLogout ends a user's session at Hydra, not through
// moat: the user signs out on Hydra's own logout page, and an operator ends
// another's through the admin API. Hydra's logout tokens (sid, no sub) must
// end exactly those sessions at moat.
func TestHydraBackchannelLogout(t *testing.T) {
	e := newHydraEnv(t, hydraop.Options{})
	bob, carol, dave := e.hy.UserAgent("bob"), e.hy.UserAgent("carol"), e.hy.UserAgent("dave")
	for _, ua := range []*realop.UserAgent{bob, carol, dave} {
		e.login(t, ua)
	}
	waitLoggedOut := func(ua *realop.UserAgent) {
		t.Helper()
		if !e.loggedOutWithin(t, ua, 5*time.Second) {
			t.Fatalf("moat's session of %s survived the back-channel logout", ua.Login)
		}
	}

	// bob signs out at Hydra (OP-initiated: no id_token_hint).
	page, err := bob.Browse(context.Background(), e.hy.Issuer+"/oauth2/sessions/logout")
	if err != nil {
		t.Fatal(err)
	}
	if !hopsContain(bob.Hops, e.hy.App, "/logout") || page.URL.String() != e.hy.App+"/logged-out" {
		t.Fatalf("sign-out at Hydra ended at %s (%d); hops %v", page.URL, page.Status, bob.Hops)
	}
	waitLoggedOut(bob)

	// An operator ends dave's session at Hydra by its sid.
	id, err := session.ParseID(e.sessionCookie(dave))
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.gw.Sessions.LoadKey(context.Background(), id.Key())
	if err != nil {
		t.Fatal(err)
	}
	if l.SID == "" {
		t.Fatal("Hydra's ID token carries no sid")
	}
	if err := e.hy.EndSession(context.Background(), l.SID); err != nil {
		t.Fatal(err)
	}
	waitLoggedOut(dave)

	if !e.loggedIn(t, carol) {
		t.Fatal("another user's session ended too")
	}
	// Hydra's logout tokens name the session (sid), not the user (sub).
	lines := backchannelLogLines(e.logs.String())
	if len(lines) != 2 || !strings.Contains(lines[0], `"sub":""`) || !strings.Contains(lines[0], `"sid_given":true`) {
		t.Fatalf("moat's back-channel logout lines %q, want two for a sid without sub", lines)
	}
	if strings.Contains(e.hy.Log(), backchannelFailed) {
		t.Fatal("Hydra could not deliver a logout token to moat")
	}
}

// TestHydraLogoutTokensNeedLegacyOption shows the quirk docs/providers.md
// describes: Hydra's logout tokens follow the drafts of Back-Channel Logout
// before 2022 (typ JWT, no exp), which moat refuses unless
// oidc.insecure_legacy_logout_tokens is set, and names that key when it
// refuses.
func TestHydraLogoutTokensNeedLegacyOption(t *testing.T) {
	e := newHydraEnv(t, hydraop.Options{}, func(c *config.Config) { c.OIDC.InsecureLegacyLogoutTokens = false })
	ua := e.hy.UserAgent("erin")
	e.login(t, ua)
	if _, err := ua.Browse(context.Background(), e.hy.Issuer+"/oauth2/sessions/logout"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.hy.Log(), backchannelFailed) {
		if time.Now().After(deadline) {
			t.Fatal("Hydra did not report moat's refusal of its logout token")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !e.loggedIn(t, ua) {
		t.Fatal("a refused logout token ended the session")
	}
	if !strings.Contains(e.logs.String(), `typ \"JWT\" is not logout+jwt`) || !strings.Contains(e.logs.String(), "oidc.insecure_legacy_logout_tokens") {
		t.Fatal("moat's log does not say why it refused the token and which key accepts it")
	}
}

// TestHydraConcurrentCallsRefreshOnce: Hydra treats a second use of a
// refresh token as theft and revokes the whole family, so API calls that
// find the access token expired at the same moment must share one refresh.
// Each call succeeds, and the session goes on refreshing afterwards; a
// reuse (made here by hand) would have revoked the grant and ended it.
func TestHydraConcurrentCallsRefreshOnce(t *testing.T) {
	e := newHydraEnv(t, hydraop.Options{})
	ua := e.hy.UserAgent("frank")
	e.login(t, ua)
	var spent string // a refresh token moat has used
	for round := range 2 {
		before := e.tokens(t, ua)
		e.expire(t, ua)
		var wg sync.WaitGroup
		status := make([]int, 8)
		for i := range status {
			wg.Go(func() { // the jar is safe to share; the UserAgent's hops are not
				req, _ := http.NewRequest(http.MethodGet, e.url+"/resource/api/orders", nil)
				req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
				if resp, err := ua.Client.Do(req); err == nil {
					resp.Body.Close()
					status[i] = resp.StatusCode
				}
			})
		}
		wg.Wait()
		for i, s := range status {
			if s != http.StatusOK {
				t.Fatalf("round %d: concurrent call %d: %d", round, i, s)
			}
		}
		after := e.tokens(t, ua)
		if after.RefreshToken == before.RefreshToken || !e.active(t, after.RefreshToken) {
			t.Fatalf("round %d: the session's refresh token was not rotated once, or Hydra revoked the new one", round)
		}
		spent = before.RefreshToken
	}
	// What a second refresh with a spent token would have done: Hydra
	// refuses it and revokes the whole family, the session's current
	// refresh token too. moat's next refresh then finds a dead grant and
	// ends the session cleanly.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spent}}
	req, _ := http.NewRequest(http.MethodPost, e.hy.Issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(e.hy.ClientID), url.QueryEscape(e.hy.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Hydra accepted a spent refresh token: %s", resp.Status)
	}
	if e.active(t, e.tokens(t, ua).RefreshToken) {
		t.Fatal("Hydra did not revoke the token family after the reuse")
	}
	e.expire(t, ua)
	if r := e.api(t, ua, http.MethodGet, "/resource/api/orders"); r.Status != http.StatusUnauthorized {
		t.Fatalf("API call on a revoked grant: %d %s, want 401", r.Status, r.Body)
	}
	if e.loggedIn(t, ua) {
		t.Fatal("the session outlived its revoked grant")
	}
}

// TestHydraJWTAccessTokensRefreshOnExpiry: with Hydra's
// strategies.access_token: jwt and a 4-second access token, the upstream
// verifies moat's Bearer as a JWT signed with Hydra's published keys, and
// once it really expires (no clock is moved) moat refreshes it on the next
// call.
func TestHydraJWTAccessTokensRefreshOnExpiry(t *testing.T) {
	e := newHydraEnv(t, hydraop.Options{JWTAccessTokens: true, AccessTokenTTL: 4 * time.Second},
		func(c *config.Config) { c.OIDC.RefreshSkew = config.Duration(time.Second) })
	ua := e.hy.UserAgent("grace")
	e.login(t, ua)
	ctx := context.Background()
	keys := gooidc.NewRemoteKeySet(ctx, e.hy.Issuer+"/.well-known/jwks.json")
	verify := func(at string) (sub string, exp time.Time) {
		t.Helper()
		payload, err := keys.VerifySignature(ctx, at)
		if err != nil {
			t.Fatalf("the access token is not a JWT signed with Hydra's published keys: %v", err)
		}
		var c struct {
			Iss string `json:"iss"`
			Sub string `json:"sub"`
			Exp int64  `json:"exp"`
			Iat int64  `json:"iat"`
		}
		if err := json.Unmarshal(payload, &c); err != nil || c.Iss != e.hy.Issuer || c.Exp-c.Iat < 4 || c.Exp-c.Iat > 5 {
			t.Fatalf("access token claims %+v (%v): want iss %s and a 4 s lifetime (5 with rounding)", c, err, e.hy.Issuer)
		}
		return c.Sub, time.Unix(c.Exp, 0)
	}
	first := e.tokens(t, ua)
	if sub, _ := verify(first.AccessToken); sub != "grace" {
		t.Fatalf("access token sub %q", sub)
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/api/orders"); r.Status != http.StatusOK || e.lastBearer() != "Bearer "+first.AccessToken {
		t.Fatalf("API call: %d %s", r.Status, r.Body)
	}
	_, exp := verify(first.AccessToken)
	time.Sleep(time.Until(exp) + time.Second) // exp is whole seconds; Hydra keeps the instant
	if out, _ := e.hy.Introspect(ctx, first.AccessToken); out["active"] == true {
		t.Fatalf("Hydra still honours the expired access token: %v (now %v)", out, time.Now().Unix())
	}
	if r := e.api(t, ua, http.MethodGet, "/resource/api/orders"); r.Status != http.StatusOK {
		t.Fatalf("API call after expiry: %d %s", r.Status, r.Body)
	}
	second := e.tokens(t, ua)
	if second.AccessToken == first.AccessToken || e.lastBearer() != "Bearer "+second.AccessToken {
		t.Fatal("moat did not refresh the expired access token")
	}
	verify(second.AccessToken)
}

// TestHydraKeyRotation: Hydra signs with a new key the moment an operator
// creates it. A login right after must not fail for want of the key (moat
// fetches the JWKS again for an ID token from the token endpoint, whatever
// the refetch interval), and the logout token signed with it ends the
// session.
func TestHydraKeyRotation(t *testing.T) {
	e := newHydraEnv(t, hydraop.Options{})
	e.login(t, e.hy.UserAgent("heidi"))
	kid, err := e.hy.RotateSigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ua := e.hy.UserAgent("ivan")
	e.login(t, ua)
	idt := e.tokens(t, ua).IDToken
	jws, err := jose.ParseSigned(idt, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || jws.Signatures[0].Header.KeyID != kid {
		t.Fatalf("Hydra did not sign the new ID token with the new key %s (%v)", kid, err)
	}
	if _, err := ua.Browse(context.Background(), e.hy.Issuer+"/oauth2/sessions/logout"); err != nil {
		t.Fatal(err)
	}
	if !e.loggedOutWithin(t, ua, 5*time.Second) {
		t.Fatal("the logout token signed with the new key did not end the session")
	}
}

package oidctest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/dpop/dpopverify"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

const redirect = "http://127.0.0.1:1/cb"

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// newDPoPOP is a provider that speaks DPoP.
func newDPoPOP(t *testing.T) *oidctest.Provider {
	p := oidctest.New(t, redirect)
	p.Set(func(b *oidctest.Behavior) { b.DPoP = true })
	return p
}

func newKey(t *testing.T) *dpop.Key {
	t.Helper()
	k, err := dpop.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func proof(t *testing.T, k *dpop.Key, htm, htu, at, nonce string, now time.Time) string {
	t.Helper()
	p, err := k.Proof(htm, htu, at, nonce, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const verifier = "verifier-verifier-verifier-verifier-verifier-0123"

func challenge() string {
	s := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// authorize runs the authorization endpoint with q added and returns the
// code.
func authorize(t *testing.T, p *oidctest.Provider, q url.Values) string {
	t.Helper()
	if q == nil {
		q = url.Values{}
	}
	if q.Get("request_uri") == "" {
		for k, v := range map[string]string{"client_id": p.ClientID, "redirect_uri": redirect, "response_type": "code",
			"code_challenge": challenge(), "code_challenge_method": "S256", "scope": "openid", "state": "s"} {
			q.Set(k, v)
		}
	}
	resp, err := noRedirect.Get(p.Issuer + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || u.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return u.Query().Get("code")
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

func post(t *testing.T, p *oidctest.Provider, path string, form url.Values, dpopHeader string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", p.Issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(p.ClientID, p.ClientSecret)
	if dpopHeader != "" {
		req.Header.Set("DPoP", dpopHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	json.NewDecoder(resp.Body).Decode(&a.body)
	return a
}

func codeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
}

// cnfJKT reads cnf.jkt of a JWT access token, checking its signature
// against the provider's JWKS.
func cnfJKT(t *testing.T, p *oidctest.Provider, at string) (string, bool) {
	t.Helper()
	resp, err := http.Get(p.Issuer + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	json.NewDecoder(resp.Body).Decode(&set)
	tok, err := jwt.ParseSigned(at, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("access token is not a JWT: %v", err)
	}
	var c struct {
		Cnf *struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := tok.Claims(set, &c); err != nil {
		t.Fatal(err)
	}
	if c.Cnf == nil {
		return "", false
	}
	return c.Cnf.JKT, true
}

// TestDPoPTokenEndpoint: a proof at the token endpoint binds the access
// token (token_type DPoP, cnf.jkt); a refresh with another key's proof
// binds the new one to that key (RFC 9449 §5, confidential client).
func TestDPoPTokenEndpoint(t *testing.T) {
	p := newDPoPOP(t)
	k := newKey(t)
	a := post(t, p, "/token", codeForm(authorize(t, p, nil)), proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now()))
	if a.status != 200 || a.str("token_type") != "DPoP" {
		t.Fatalf("token: %d %v", a.status, a.body)
	}
	at := a.str("access_token")
	if jkt, _ := cnfJKT(t, p, at); jkt != k.Thumbprint() || p.AccessTokenJKT(at) != jkt {
		t.Fatalf("cnf.jkt %q, key %q", jkt, k.Thumbprint())
	}
	k2 := newKey(t)
	r := post(t, p, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.str("refresh_token")}},
		proof(t, k2, "POST", p.Issuer+"/token", "", "", time.Now()))
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("refresh: %d %v", r.status, r.body)
	}
	if jkt, _ := cnfJKT(t, p, r.str("access_token")); jkt != k2.Thumbprint() {
		t.Fatalf("refreshed cnf.jkt %q, want the new key's %q", jkt, k2.Thumbprint())
	}
	// Without a proof, a Bearer token, as before DPoP.
	b := post(t, p, "/token", codeForm(authorize(t, p, nil)), "")
	if b.status != 200 || b.str("token_type") != "Bearer" || p.AccessTokenJKT(b.str("access_token")) != "" {
		t.Fatalf("no proof: %d %v", b.status, b.body)
	}
	for _, r := range p.Requests() {
		if r.Form.Get("grant_type") == "refresh_token" && r.DPoP == "" {
			t.Fatal("the recorded refresh request has no DPoP header")
		}
	}
}

// TestDPoPTokenEndpointRefusals: each bad proof is a clear error at the
// token endpoint, never a Bearer token.
func TestDPoPTokenEndpointRefusals(t *testing.T) {
	tokenURL := func(p *oidctest.Provider) string { return p.Issuer + "/token" }
	cases := []struct {
		name     string
		behavior func(*oidctest.Behavior)
		proof    func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string
		code     string // the error
		nonce    bool   // DPoP-Nonce in the answer
	}{
		{"stale iat", nil, func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string {
			return proof(t, k, "POST", tokenURL(p), "", "", time.Now().Add(-5*time.Minute))
		}, dpopverify.CodeInvalidProof, false},
		{"iat in the future", nil, func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string {
			return proof(t, k, "POST", tokenURL(p), "", "", time.Now().Add(5*time.Minute))
		}, dpopverify.CodeInvalidProof, false},
		{"wrong htm", nil, func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string {
			return proof(t, k, "GET", tokenURL(p), "", "", time.Now())
		}, dpopverify.CodeInvalidProof, false},
		{"wrong htu", nil, func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string {
			return proof(t, k, "POST", p.Issuer+"/par", "", "", time.Now())
		}, dpopverify.CodeInvalidProof, false},
		{"not a JWT", nil, func(*testing.T, *oidctest.Provider, *dpop.Key) string { return "not-a-proof" },
			dpopverify.CodeInvalidProof, false},
		{"proof required, none sent", func(b *oidctest.Behavior) { b.DPoPRequired = true },
			func(*testing.T, *oidctest.Provider, *dpop.Key) string { return "" }, dpopverify.CodeInvalidProof, false},
		{"nonce required, none sent", func(b *oidctest.Behavior) { b.DPoPRequireNonce = true },
			func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string {
				return proof(t, k, "POST", tokenURL(p), "", "", time.Now())
			}, dpopverify.CodeUseNonce, true},
		{"nonce changed", func(b *oidctest.Behavior) { b.DPoPRequireNonce = true },
			func(t *testing.T, p *oidctest.Provider, k *dpop.Key) string {
				old := p.DPoPNonce()
				p.RotateDPoPNonce()
				return proof(t, k, "POST", tokenURL(p), "", old, time.Now())
			}, dpopverify.CodeUseNonce, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newDPoPOP(t)
			if tc.behavior != nil {
				p.Set(tc.behavior)
			}
			k := newKey(t)
			code := authorize(t, p, nil)
			a := post(t, p, "/token", codeForm(code), tc.proof(t, p, k))
			if a.status != 400 || a.str("error") != tc.code || a.str("access_token") != "" {
				t.Fatalf("%d %v, want 400 %s", a.status, a.body, tc.code)
			}
			if got := a.header.Get("DPoP-Nonce"); (got != "") != tc.nonce || (tc.nonce && got != p.DPoPNonce()) {
				t.Fatalf("DPoP-Nonce %q, provider's %q", got, p.DPoPNonce())
			}
			if p.DPoPError() == "" {
				t.Fatal("no refusal recorded")
			}
			if tc.nonce { // the client retries once with the nonce it was given
				a = post(t, p, "/token", codeForm(code), proof(t, k, "POST", tokenURL(p), "", a.header.Get("DPoP-Nonce"), time.Now()))
				if a.status != 200 || a.str("token_type") != "DPoP" {
					t.Fatalf("retry with the nonce: %d %v", a.status, a.body)
				}
			}
		})
	}
}

func TestDPoPReplayedProof(t *testing.T) {
	p := newDPoPOP(t)
	k := newKey(t)
	pr := proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now())
	a := post(t, p, "/token", codeForm(authorize(t, p, nil)), pr)
	if a.status != 200 {
		t.Fatalf("%d %v", a.status, a.body)
	}
	a = post(t, p, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.str("refresh_token")}}, pr)
	if a.status != 400 || a.str("error") != dpopverify.CodeInvalidProof || !strings.Contains(p.DPoPError(), "jti") {
		t.Fatalf("replayed proof: %d %v (%s)", a.status, a.body, p.DPoPError())
	}
}

// TestDPoPPAR: a proof at PAR, or dpop_jkt, binds the code to the key
// (RFC 9449 §10); redeeming it with another key's proof, or none, fails.
func TestDPoPPAR(t *testing.T) {
	k, other := newKey(t), newKey(t)
	parProof := func(p *oidctest.Provider, k *dpop.Key) string {
		return proof(t, k, "POST", p.Issuer+"/par", "", "", time.Now())
	}
	parForm := func(p *oidctest.Provider, extra url.Values) url.Values {
		f := url.Values{"client_id": {p.ClientID}, "redirect_uri": {redirect}, "response_type": {"code"},
			"code_challenge": {challenge()}, "code_challenge_method": {"S256"}, "scope": {"openid"}, "state": {"s"}}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	push := func(p *oidctest.Provider, extra url.Values, hdr string) string {
		a := post(t, p, "/par", parForm(p, extra), hdr)
		if a.status != 201 {
			t.Fatalf("PAR: %d %v", a.status, a.body)
		}
		return authorize(t, p, url.Values{"client_id": {p.ClientID}, "request_uri": {a.str("request_uri")}})
	}
	cases := []struct {
		name   string
		extra  url.Values
		header func(p *oidctest.Provider) string
	}{
		{"DPoP header", nil, func(p *oidctest.Provider) string { return parProof(p, k) }},
		{"dpop_jkt", url.Values{"dpop_jkt": {k.Thumbprint()}}, func(*oidctest.Provider) string { return "" }},
		{"both", url.Values{"dpop_jkt": {k.Thumbprint()}}, func(p *oidctest.Provider) string { return parProof(p, k) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newDPoPOP(t)
			for _, bad := range []*dpop.Key{other, nil} {
				hdr := ""
				if bad != nil {
					hdr = proof(t, bad, "POST", p.Issuer+"/token", "", "", time.Now())
				}
				if a := post(t, p, "/token", codeForm(push(p, tc.extra, tc.header(p))), hdr); a.status != 400 || a.str("error") != "invalid_grant" {
					t.Fatalf("redeemed with key %v: %d %v", bad, a.status, a.body)
				}
			}
			a := post(t, p, "/token", codeForm(push(p, tc.extra, tc.header(p))), proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now()))
			if a.status != 200 || a.str("token_type") != "DPoP" {
				t.Fatalf("redeemed with the bound key: %d %v", a.status, a.body)
			}
		})
	}
	p := newDPoPOP(t)
	a := post(t, p, "/par", parForm(p, url.Values{"dpop_jkt": {other.Thumbprint()}}), parProof(p, k))
	if a.status != 400 || a.str("error") != dpopverify.CodeInvalidProof {
		t.Fatalf("dpop_jkt and proof disagree: %d %v", a.status, a.body)
	}
	if a := post(t, p, "/par", parForm(p, nil), proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now())); a.status != 400 || a.str("error") != dpopverify.CodeInvalidProof {
		t.Fatalf("PAR proof for the token endpoint: %d %v", a.status, a.body)
	}
}

// TestDPoPMisbehaviour: the knobs that make the provider answer without
// binding do what they say, so client tests can rely on them.
func TestDPoPMisbehaviour(t *testing.T) {
	// Without Behavior.DPoP: a provider that knows nothing of DPoP.
	p := oidctest.New(t, redirect)
	k := newKey(t)
	var meta map[string]any
	resp, err := http.Get(p.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if _, ok := meta["dpop_signing_alg_values_supported"]; ok {
		t.Fatal("a provider without DPoP advertises it")
	}
	a := post(t, p, "/token", codeForm(authorize(t, p, nil)), proof(t, k, "GET", "https://elsewhere/", "", "", time.Now()))
	if a.status != 200 || a.str("token_type") != "Bearer" || p.DPoPError() != "" {
		t.Fatalf("no DPoP: %d %v (%s)", a.status, a.body, p.DPoPError())
	}

	p = newDPoPOP(t)
	p.Set(func(b *oidctest.Behavior) { b.DPoPDowngrade = true })
	a = post(t, p, "/token", codeForm(authorize(t, p, nil)), proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now()))
	if a.status != 200 || a.str("token_type") != "Bearer" || p.AccessTokenJKT(a.str("access_token")) != "" {
		t.Fatalf("downgrade: %d %v", a.status, a.body)
	}
	p.Set(func(b *oidctest.Behavior) { b.DPoPDowngrade, b.DPoPDropCnf = false, true })
	a = post(t, p, "/token", codeForm(authorize(t, p, nil)), proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now()))
	if a.status != 200 || a.str("token_type") != "DPoP" {
		t.Fatalf("drop cnf: %d %v", a.status, a.body)
	}
	if _, ok := cnfJKT(t, p, a.str("access_token")); ok {
		t.Fatal("DPoPDropCnf left cnf in the token")
	}
}

// TestDPoPResource: the UserInfo endpoint and DPoPUpstream take a bound
// token only with the DPoP scheme and a proof by its key for this request.
func TestDPoPResource(t *testing.T) {
	p := newDPoPOP(t)
	k, other := newKey(t), newKey(t)
	a := post(t, p, "/token", codeForm(authorize(t, p, nil)), proof(t, k, "POST", p.Issuer+"/token", "", "", time.Now()))
	at := a.str("access_token")
	up := httptestServer(t, p.DPoPUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pr, ok := dpopverify.FromContext(r.Context()); !ok || pr.JKT != k.Thumbprint() {
			t.Errorf("upstream saw proof %+v", pr)
		}
	})))
	for _, target := range []string{p.Issuer + "/userinfo", up + "/api/x"} {
		cases := []struct {
			name, scheme string
			proof        string
			status       int
			code         string
		}{
			{"right", "DPoP", proof(t, k, "GET", target, at, "", time.Now()), 200, ""},
			{"Bearer", "Bearer", "", 401, ""},
			{"wrong ath", "DPoP", proof(t, k, "GET", target, "another-token", "", time.Now()), 401, dpopverify.CodeInvalidProof},
			{"no ath", "DPoP", proof(t, k, "GET", target, "", "", time.Now()), 401, dpopverify.CodeInvalidProof},
			{"other key", "DPoP", proof(t, other, "GET", target, at, "", time.Now()), 401, dpopverify.CodeInvalidProof},
			{"wrong htu", "DPoP", proof(t, k, "GET", target+"x", at, "", time.Now()), 401, dpopverify.CodeInvalidProof},
			{"no proof", "DPoP", "", 401, dpopverify.CodeInvalidProof},
		}
		for _, tc := range cases {
			t.Run(target+" "+tc.name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", target, nil)
				req.Header.Set("Authorization", tc.scheme+" "+at)
				if tc.proof != "" {
					req.Header.Set("DPoP", tc.proof)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				ch := resp.Header.Get("WWW-Authenticate")
				if resp.StatusCode != tc.status || (tc.code != "" && !strings.Contains(ch, `error="`+tc.code+`"`)) {
					t.Fatalf("%d %q, want %d %s", resp.StatusCode, ch, tc.status, tc.code)
				}
			})
		}
	}
}

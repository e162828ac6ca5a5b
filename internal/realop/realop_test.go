package realop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// recordingTB stands in for a test to see whether Require skips or fails.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                      {}
func (r *recordingTB) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recordingTB) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

func TestRequireFailsOnlyWhenRequired(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no node
	for _, required := range []string{"", "1"} {
		t.Setenv(RequireEnv, required)
		r := &recordingTB{TB: t}
		Require(r)
		if required == "1" && (r.fatal == "" || r.skip != "") {
			t.Errorf("%s=1: fatal %q skip %q, want a failure", RequireEnv, r.fatal, r.skip)
		}
		if required == "" && (r.skip == "" || r.fatal != "") {
			t.Errorf("%s unset: fatal %q skip %q, want a skip", RequireEnv, r.fatal, r.skip)
		}
	}
}

// TestProvider checks the features moat's tests rely on: discovery,
// login through the interaction pages with PKCE, refresh, client
// credentials with a resource indicator, revocation and introspection.
func TestProvider(t *testing.T) {
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Write([]byte("code=" + q.Get("code") + "&iss=" + q.Get("iss")))
	}))
	defer rp.Close()
	op := Start(t, Options{
		RedirectURIs: []string{rp.URL + "/cb"},
		Resources:    map[string]string{"https://api.example.test": "api:read"},
	})

	var meta map[string]any
	getJSON(t, op.Issuer+"/.well-known/openid-configuration", &meta)
	for _, k := range []string{"pushed_authorization_request_endpoint", "revocation_endpoint", "end_session_endpoint", "introspection_endpoint"} {
		if meta[k] == nil {
			t.Errorf("discovery lacks %s", k)
		}
	}
	if meta["backchannel_logout_supported"] != true || meta["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("discovery: back-channel logout %v, iss %v", meta["backchannel_logout_supported"], meta["authorization_response_iss_parameter_supported"])
	}

	ua := op.UserAgent("dave")
	verifier := oauth2.GenerateVerifier()
	q := url.Values{
		"client_id": {op.ClientID}, "response_type": {"code"}, "scope": {"openid email"},
		"redirect_uri": {rp.URL + "/cb"}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	}
	page, err := ua.Browse(context.Background(), op.Issuer+"/auth?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := url.ParseQuery(string(page.Body))
	if got.Get("code") == "" || got.Get("iss") != op.Issuer {
		t.Fatalf("login ended at %s: %.300s", page.URL, page.Body)
	}
	tok := op.token(t, url.Values{
		"grant_type": {"authorization_code"}, "code": {got.Get("code")}, "redirect_uri": {rp.URL + "/cb"},
		"code_verifier": {verifier},
	})
	if tok["refresh_token"] == nil || tok["id_token"] == nil {
		t.Fatalf("token response lacks refresh or ID token: %v", keys(tok))
	}
	rt := tok["refresh_token"].(string)
	if sub, active, err := op.Introspect(tok["access_token"].(string)); err != nil || !active || sub != "dave" {
		t.Fatalf("introspect access token: %q %v %v", sub, active, err)
	}
	ref := op.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if ref["access_token"] == nil {
		t.Fatal("refresh gave no access token")
	}

	cc := op.token(t, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://api.example.test"}, "scope": {"api:read"}})
	parsed, err := jwt.ParseSigned(cc["access_token"].(string), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("client credentials token is not a JWT: %v", err)
	}
	var claims jwt.Claims
	parsed.UnsafeClaimsWithoutVerification(&claims) // only the audience is of interest here
	if !claims.Audience.Contains("https://api.example.test") {
		t.Fatalf("audience %v", claims.Audience)
	}

	if rt2, ok := ref["refresh_token"].(string); ok {
		rt = rt2
	}
	op.post(t, "/token/revocation", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}})
	if _, active, _ := op.Introspect(rt); active {
		t.Fatal("the refresh token is active after revocation")
	}
}

func (op *OP) token(t *testing.T, form url.Values) map[string]any {
	t.Helper()
	return op.post(t, "/token", form)
}

func (op *OP) post(t *testing.T, path string, form url.Values) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, op.Issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(op.ClientID, op.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s: %s %v", path, resp.Status, out)
	}
	return out
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]any) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

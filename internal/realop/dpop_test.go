package realop

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/moat-bff/moat/internal/dpop"
)

// TestProviderDPoP shows what moat's DPoP tests rely on in oidc-provider,
// driven by hand: a client registered with dpop_bound_access_tokens gets
// nothing without a proof, a proof (with the provider's nonce when it
// demands one) gets token_type DPoP with cnf.jkt, and the Upstream lets
// the token through only with a proof by that key. Opaque tokens are
// checked by introspection, JWT access tokens against the JWKS.
func TestProviderDPoP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nonce    bool
		resource string
	}{
		{"opaque tokens", false, ""},
		{"provider nonces, JWT access tokens", true, "https://api.example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(r.URL.RawQuery))
			}))
			defer rp.Close()
			opts := Options{RedirectURIs: []string{rp.URL + "/cb"}, DPoP: true, DPoPRequireNonce: tc.nonce, FAPI2: true}
			if tc.resource != "" {
				opts.Resources, opts.DefaultResource = map[string]string{tc.resource: "api:read"}, tc.resource
			}
			op := Start(t, opts)
			var meta map[string]any
			getJSON(t, op.Issuer+"/.well-known/openid-configuration", &meta)
			if algs, _ := meta["dpop_signing_alg_values_supported"].([]any); len(algs) == 0 || algs[0] != "ES256" {
				t.Fatalf("dpop_signing_alg_values_supported %v", meta["dpop_signing_alg_values_supported"])
			}
			key, err := dpop.NewKey()
			if err != nil {
				t.Fatal(err)
			}
			verifier := oauth2.GenerateVerifier()
			q := url.Values{
				"client_id": {op.ClientID}, "response_type": {"code"}, "scope": {"openid"},
				"redirect_uri": {rp.URL + "/cb"}, "state": {"s"}, "nonce": {"n"},
				"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
			}
			page, err := op.UserAgent("erin").Browse(context.Background(), op.Issuer+"/auth?"+q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			got, _ := url.ParseQuery(string(page.Body))
			code := got.Get("code")
			if code == "" {
				t.Fatalf("login ended at %s: %.300s", page.URL, page.Body)
			}
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rp.URL + "/cb"}, "code_verifier": {verifier}}
			tokenURL := op.Issuer + "/token"

			// oidc-provider says only invalid_grant; "DPoP proof JWT not
			// provided" goes to its log, which may come after the answer.
			if st, _, body := op.dpopPost(t, "/token", form, ""); st != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("without a proof: %d %v", st, body)
			}
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(op.Stderr(), "DPoP proof JWT not provided"); {
				if time.Now().After(deadline) {
					t.Fatal("the provider did not log why it refused the request without a proof")
				}
				time.Sleep(20 * time.Millisecond)
			}
			nonce := ""
			if tc.nonce {
				proof, _ := key.Proof("POST", tokenURL, "", "", time.Now())
				st, h, body := op.dpopPost(t, "/token", form, proof)
				if st != 400 || body["error"] != "use_dpop_nonce" || h.Get("DPoP-Nonce") == "" {
					t.Fatalf("without the nonce: %d %v %v", st, h, body)
				}
				nonce = h.Get("DPoP-Nonce")
			}
			proof, _ := key.Proof("POST", tokenURL, "", nonce, time.Now())
			st, _, tok := op.dpopPost(t, "/token", form, proof)
			if st != 200 || tok["token_type"] != "DPoP" {
				t.Fatalf("token: %d %v", st, tok)
			}
			at := tok["access_token"].(string)
			if jkt, err := op.DPoPBinding(context.Background(), at); err != nil || jkt != key.Thumbprint() {
				t.Fatalf("cnf.jkt %q (%v), key %q", jkt, err, key.Thumbprint())
			}
			if (strings.Count(at, ".") == 2) != (tc.resource != "") {
				t.Fatalf("access token format: %.20s…", at)
			}

			up := op.DPoPUpstream(t, false)
			call := func(scheme, proof string) int {
				req, _ := http.NewRequest("GET", up.URL+"/api/x?y=1", nil)
				req.Header.Set("Authorization", scheme+" "+at)
				if proof != "" {
					req.Header.Set("DPoP", proof)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			good, _ := key.Proof("GET", up.URL+"/api/x", at, "", time.Now())
			if st := call("DPoP", good); st != 200 {
				t.Fatalf("upstream: %d %v", st, up.Refused())
			}
			other, _ := dpop.NewKey()
			foreign, _ := other.Proof("GET", up.URL+"/api/x", at, "", time.Now())
			for name, st := range map[string]int{"Bearer": call("Bearer", ""), "replayed proof": call("DPoP", good), "other key": call("DPoP", foreign)} {
				if st != 401 {
					t.Errorf("upstream, %s: %d", name, st)
				}
			}
			if s := up.Seen(); len(s) != 1 || s[0].JKT != key.Thumbprint() || len(up.Refused()) != 3 {
				t.Fatalf("upstream saw %+v, refused %v", s, up.Refused())
			}

			// §5: a refresh with a new key's proof binds the new token to it.
			key2, _ := dpop.NewKey()
			proof, _ = key2.Proof("POST", tokenURL, "", nonce, time.Now())
			st, _, ref := op.dpopPost(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}, proof)
			if st != 200 || ref["token_type"] != "DPoP" {
				t.Fatalf("refresh: %d %v", st, ref)
			}
			if jkt, _ := op.DPoPBinding(context.Background(), ref["access_token"].(string)); jkt != key2.Thumbprint() {
				t.Fatalf("refreshed token bound to %q, want the refresh proof's key", jkt)
			}
		})
	}
}

func (op *OP) dpopPost(t *testing.T, path string, form url.Values, proof string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, op.Issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(op.ClientID, op.ClientSecret)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

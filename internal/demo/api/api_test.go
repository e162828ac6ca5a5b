package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/moat-bff/moat/internal/demo/api"
)

// The recipe API accepts only a signed, unexpired access token of its
// issuer for its audience, and answers everything else with a 401 JSON
// body and a Bearer challenge (RFC 6750 §3).
func TestTokenValidation(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer jwks.Close()
	const issuer, audience = "http://127.0.0.1:9011", "moat-demo"
	h := api.New(t.Context(), api.Config{Issuer: issuer, Audience: audience, JWKSURL: jwks.URL})

	sign := func(k *ecdsa.PrivateKey, edit func(map[string]any)) string {
		claims := map[string]any{"iss": issuer, "sub": "alice", "aud": []string{audience}, "client_id": audience,
			"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(), "jti": "1"}
		if edit != nil {
			edit(claims)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct {
		name  string
		auth  string
		code  int
		error string
	}{
		{"access token", "Bearer " + sign(key, nil), http.StatusOK, ""},
		{"no token", "", http.StatusUnauthorized, "unauthorized"},
		{"basic auth", "Basic YWxpY2U6cHc=", http.StatusUnauthorized, "unauthorized"},
		{"ID token (no client_id)", "Bearer " + sign(key, func(c map[string]any) { delete(c, "client_id"); c["nonce"] = "n" }), http.StatusUnauthorized, "invalid_token"},
		{"other issuer", "Bearer " + sign(key, func(c map[string]any) { c["iss"] = "http://127.0.0.1:9012" }), http.StatusUnauthorized, "invalid_token"},
		{"other audience", "Bearer " + sign(key, func(c map[string]any) { c["aud"] = []string{"someone-else"} }), http.StatusUnauthorized, "invalid_token"},
		{"expired", "Bearer " + sign(key, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), http.StatusUnauthorized, "invalid_token"},
		{"unknown key", "Bearer " + sign(other, nil), http.StatusUnauthorized, "invalid_token"},
		{"alg none", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", http.StatusUnauthorized, "invalid_token"},
		{"garbage", "Bearer not-a-jwt", http.StatusUnauthorized, "invalid_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/recipe", nil)
			if c.auth != "" {
				r.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("%d, body %q is not JSON", w.Code, w.Body)
			}
			if w.Code != c.code {
				t.Fatalf("status %d, want %d: %v", w.Code, c.code, body)
			}
			if c.code == http.StatusOK {
				if body["name"] == "" || body["name"] == nil {
					t.Errorf("no recipe: %v", body)
				}
				return
			}
			if body["error"] != c.error || w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("error %v (want %s), challenge %q", body["error"], c.error, w.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

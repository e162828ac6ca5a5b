package clientauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestRequestObjectClaims: the request object carries every parameter, the
// registered claims JAR asks for, and a parameter can not replace them.
func TestRequestObjectClaims(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "jar-1", Algorithm: "ES256"}}})
	ks, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	params := url.Values{"client_id": {"moat"}, "scope": {"openid"}, "max_age": {"60"}, "iss": {"evil"}, "aud": {"evil"}, "exp": {"9"},
		"resource": {"https://a.example", "https://b.example"}}
	raw, err := ks.RequestObject("moat", "https://idp.example", params, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := tok.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "oauth-authz-req+jwt" || tok.Headers[0].KeyID != "jar-1" {
		t.Errorf("header typ %v kid %q", typ, tok.Headers[0].KeyID)
	}
	var c map[string]any
	if err := tok.Claims(&k.PublicKey, &c); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"iss": "moat", "aud": "https://idp.example", "client_id": "moat", "scope": "openid", "max_age": float64(60),
		"nbf": float64(now.Unix()), "iat": float64(now.Unix()), "exp": float64(now.Add(RequestObjectLifetime).Unix())}
	for name, v := range want {
		if c[name] != v {
			t.Errorf("%s = %v, want %v", name, c[name], v)
		}
	}
	if r, _ := c["resource"].([]any); len(r) != 2 || r[0] != "https://a.example" || r[1] != "https://b.example" {
		t.Errorf("resource = %v, want both as an array", c["resource"])
	}
	if jti, _ := c["jti"].(string); len(jti) < 20 {
		t.Errorf("jti %q", jti)
	}
	if _, err := ks.RequestObject("moat", "a", url.Values{"max_age": {"soon"}}, now); err == nil {
		t.Error("a max_age that is not a number was signed")
	}
}

// BenchmarkRequestObject is the CPU cost oidc.request_object adds to each
// login: one request object signed per authorization request, per key type.
func BenchmarkRequestObject(b *testing.B) {
	params := url.Values{
		"client_id": {"moat"}, "response_type": {"code"}, "scope": {"openid profile email"},
		"redirect_uri": {"https://app.example.com/auth/callback"}, "state": {"mV0ggrW3JfFRF3TvdrUDAc5Nl2CRYA2jlDTAqLhiiIE"},
		"nonce": {"ZmM3yqtpkn2FYc2YQ5hpCZ7ljPdg8qEtS1ZpWqkVX4Q"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"},
	}
	for _, alg := range []string{"ES256", "EdDSA", "PS256"} {
		b.Run(alg, func(b *testing.B) {
			pemKey, _ := Generate(alg)
			ks, _ := Parse(pemKey)
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.RequestObject("moat", "https://idp.example", params, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

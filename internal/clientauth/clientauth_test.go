package clientauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func pemOf(t *testing.T, typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParse(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	pubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ed, _ := Generate("EdDSA")
	es, _ := Generate("ES256")
	ps, _ := Generate("PS256")
	jwkSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec, KeyID: "k1", Algorithm: "ES256"}}})
	smallSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: small, KeyID: "k1", Algorithm: "RS256"}}})
	big, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: big, KeyID: "k1", Algorithm: "RS256"}}})
	wrongAlg, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec, KeyID: "k1", Algorithm: "PS256"}}})
	pubSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ec.PublicKey, KeyID: "k1"}}})
	for _, tc := range []struct {
		name    string
		in      []byte
		alg     string
		n       int
		wantErr string
	}{
		{"PKCS#8 EC", es, "ES256", 1, ""},
		{"PKCS#8 Ed25519", ed, "EdDSA", 1, ""},
		{"PKCS#8 RSA", ps, "PS256", 1, ""},
		{"SEC 1 EC", pemOf(t, "EC PRIVATE KEY", ecDER), "ES256", 1, ""},
		{"PKCS#1 RSA too small", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "", 0, "2048 bits"},
		{"two keys for a rotation", append(append([]byte{}, es...), ed...), "ES256", 2, ""},
		{"JWK set", jwkSet, "ES256", 1, ""},
		{"JWK set, RS256", rsSet, "RS256", 1, ""},
		{"JWK set, RS256 too small", smallSet, "", 0, "2048 bits"},
		{"JWK set, alg of another key type", wrongAlg, "", 0, "cannot sign with this key"},
		{"P-384", pemOf(t, "EC PRIVATE KEY", p384DER), "", 0, "P-256"},
		{"a public key", pemOf(t, "PUBLIC KEY", pubDER), "", 0, "not a private key"},
		{"a public JWK set", pubSet, "", 0, "public key"},
		{"nothing", []byte("hello"), "", 0, "no private key"},
		{"broken JSON", []byte("{"), "", 0, "not a JWK set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			kid, alg := ks.Signing()
			if alg != tc.alg || kid == "" || len(ks.Public().Keys) != tc.n {
				t.Fatalf("kid %q alg %q, %d public keys; want alg %s and %d keys", kid, alg, len(ks.Public().Keys), tc.alg, tc.n)
			}
			for _, k := range ks.Public().Keys {
				if !k.IsPublic() || k.KeyID == "" || k.Use != "sig" {
					t.Fatalf("published key %+v is not a public signing key with a kid", k)
				}
			}
		})
	}
}

// TestAssertion: RFC 7523 §3 claims, signed by the first key, verifiable
// with the published set, a new jti each time.
func TestAssertion(t *testing.T) {
	pemKey, _ := Generate("ES256")
	ks, err := Parse(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a1, err := ks.Assertion("moat", "https://idp.example", now)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := ks.Assertion("moat", "https://idp.example", now)
	pub := ks.Public()
	var ids []string
	for _, a := range []string{a1, a2} {
		tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		kid, _ := ks.Signing()
		if tok.Headers[0].KeyID != kid {
			t.Errorf("kid header %q, want %q", tok.Headers[0].KeyID, kid)
		}
		var c jwt.Claims
		if err := tok.Claims(pub, &c); err != nil {
			t.Fatal(err)
		}
		if err := c.ValidateWithLeeway(jwt.Expected{Issuer: "moat", Subject: "moat", AnyAudience: jwt.Audience{"https://idp.example"}, Time: now}, 0); err != nil {
			t.Fatal(err)
		}
		if c.Expiry.Time().Unix() != now.Add(Lifetime).Unix() || c.ID == "" {
			t.Fatalf("exp %v after now, jti %q", c.Expiry.Time().Sub(now), c.ID)
		}
		ids = append(ids, c.ID)
	}
	if ids[0] == ids[1] {
		t.Fatal("two assertions share a jti: the IdP would refuse the second as a replay")
	}
}

// TestTransport: a form POST loses any secret and gains an assertion; a
// GET passes untouched.
func TestTransport(t *testing.T) {
	pemKey, _ := Generate("ES256")
	ks, _ := Parse(pemKey)
	var got *http.Request
	var body url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, nil
		body, _ = url.ParseQuery(string(b))
	}))
	defer srv.Close()
	for _, aud := range []string{"https://idp.example", ""} {
		c := &http.Client{Transport: &Transport{Keys: ks, ClientID: "moat", Audience: aud}}
		req, _ := http.NewRequest("POST", srv.URL+"/token?x=1", strings.NewReader("grant_type=refresh_token&refresh_token=rt&client_secret=leak"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("moat", "leak")
		if _, err := c.Do(req); err != nil {
			t.Fatal(err)
		}
		if got.Header.Get("Authorization") != "" || body.Has("client_secret") {
			t.Fatal("a client secret reached the IdP next to the assertion")
		}
		if body.Get("client_assertion_type") != AssertionType || body.Get("client_id") != "moat" || body.Get("refresh_token") != "rt" {
			t.Fatalf("form %v", body)
		}
		tok, err := jwt.ParseSigned(body.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var c2 jwt.Claims
		tok.Claims(ks.Public(), &c2)
		want := aud
		if want == "" {
			want = srv.URL + "/token"
		}
		if !c2.Audience.Contains(want) || len(c2.Audience) != 1 {
			t.Fatalf("aud %v, want [%s]", c2.Audience, want)
		}
	}
	c := &http.Client{Transport: &Transport{Keys: ks, ClientID: "moat", Audience: "x"}}
	if _, err := c.Get(srv.URL + "/jwks"); err != nil || got.Method != "GET" || len(body) != 0 {
		t.Fatalf("GET changed: %v %v", err, body)
	}
}

// BenchmarkAssertion is the CPU cost private_key_jwt adds to each
// client-authenticated IdP call (a refresh, say), per key type.
func BenchmarkAssertion(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA", "PS256"} {
		b.Run(alg, func(b *testing.B) {
			pemKey, _ := Generate(alg)
			ks, _ := Parse(pemKey)
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ks.Assertion("moat", "https://idp.example", now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

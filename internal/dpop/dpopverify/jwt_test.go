package dpopverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestJWTBinding: the cnf.jkt of a JWT access token comes back only when
// the token is signed by one of the issuer's keys, from that issuer, and
// not expired.
func TestJWTBinding(t *testing.T) {
	newKey := func(kid string) jose.JSONWebKey {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.ES256)}
	}
	issuerKey, otherKey := newKey("op"), newKey("other")
	keys := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{issuerKey.Public()}}
	const iss = "https://op.example"
	sign := func(k jose.JSONWebKey, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType("at+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": iss, "sub": "alice", "exp": t0.Add(time.Minute).Unix(), "cnf": map[string]any{"jkt": "thumb"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		token   string
		want    string
		wantErr bool
	}{
		{"bound", sign(issuerKey, claims(nil)), "thumb", false},
		{"not bound", sign(issuerKey, claims(func(c map[string]any) { delete(c, "cnf") })), "", false},
		{"another key", sign(otherKey, claims(nil)), "", true},
		{"another issuer", sign(issuerKey, claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), "", true},
		{"expired", sign(issuerKey, claims(func(c map[string]any) { c["exp"] = t0.Add(-time.Second).Unix() })), "", true},
		{"no exp", sign(issuerKey, claims(func(c map[string]any) { delete(c, "exp") })), "", true},
		{"opaque", "an-opaque-token", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jkt, err := JWTBinding(tc.token, keys, iss, t0)
			if jkt != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("= %q, %v; want %q, error %v", jkt, err, tc.want, tc.wantErr)
			}
		})
	}
}

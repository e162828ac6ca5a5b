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

const jwtIssuer = "https://op.example"

func jwtKey(kid string) jose.JSONWebKey {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(jose.ES256)}
}

// accessToken signs an RFC 9068 access token bound to thumbprint "thumb",
// from jwtIssuer, expiring a minute after t0; mod changes its claims.
func accessToken(tb testing.TB, k jose.JSONWebKey, mod func(map[string]any)) string {
	claims := map[string]any{"iss": jwtIssuer, "sub": "alice", "exp": t0.Add(time.Minute).Unix(), "cnf": map[string]any{"jkt": "thumb"}}
	if mod != nil {
		mod(claims)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// TestJWTBinding: the cnf.jkt of a JWT access token comes back only when
// the token is signed by one of the issuer's keys, from that issuer, and
// not expired.
func TestJWTBinding(t *testing.T) {
	issuerKey, otherKey := jwtKey("op"), jwtKey("other")
	keys := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{issuerKey.Public()}}
	for _, tc := range []struct {
		name    string
		token   string
		want    string
		wantErr bool
	}{
		{"bound", accessToken(t, issuerKey, nil), "thumb", false},
		{"not bound", accessToken(t, issuerKey, func(c map[string]any) { delete(c, "cnf") }), "", false},
		{"another key", accessToken(t, otherKey, nil), "", true},
		{"another issuer", accessToken(t, issuerKey, func(c map[string]any) { c["iss"] = "https://evil.example" }), "", true},
		{"expired", accessToken(t, issuerKey, func(c map[string]any) { c["exp"] = t0.Add(-time.Second).Unix() }), "", true},
		{"no exp", accessToken(t, issuerKey, func(c map[string]any) { delete(c, "exp") }), "", true},
		{"opaque", "an-opaque-token", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jkt, err := JWTBinding(tc.token, keys, jwtIssuer, t0)
			if jkt != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("= %q, %v; want %q, error %v", jkt, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzJWTBinding: whatever the token, JWTBinding returns, and what it
// accepts is the issuer's own token, carrying the binding it was signed
// with: a change to a signed token is never a token bound to another key.
func FuzzJWTBinding(f *testing.F) {
	k := jwtKey("op")
	keys := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}}
	f.Add(accessToken(f, k, nil))
	f.Add(accessToken(f, jwtKey("other"), nil))
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		if jkt, err := JWTBinding(token, keys, jwtIssuer, t0); err == nil && jkt != "thumb" {
			t.Fatalf("accepted %q bound to %q", token, jkt)
		}
	})
}

package oidc

import (
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// FuzzParseJWKS feeds the JWKS parser arbitrary documents: it never
// panics, and every key it keeps is a valid public key not meant for
// encryption.
func FuzzParseJWKS(f *testing.F) {
	k := oidctest.NewKey("k1")
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*k}})
	for _, seed := range []string{string(pub), string(priv), `{"keys":[]}`, `{"keys":[{"kty":"OKP","crv":"X448","x":"AA"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","use":"enc"}]}`, `{`, `null`, `{"keys":null}`, `{"keys":[1,"x",null]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseJWKS(body)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no key")
		}
		for _, key := range keys {
			if !key.Valid() || !key.IsPublic() || key.Use == "enc" {
				t.Fatalf("kept %+v", key)
			}
		}
	})
}

package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// parsed is a proof taken apart with go-jose, checked the way a DPoP
// server does (RFC 9449 §4.3 steps 3-6): one ES256 signature, typ
// dpop+jwt, a public jwk header that verifies it.
type parsed struct {
	typ    string
	jwk    jose.JSONWebKey
	claims map[string]any
	raw    map[string]json.RawMessage
}

func parseProof(t *testing.T, proof string) parsed {
	t.Helper()
	if strings.Count(proof, ".") != 2 {
		t.Fatalf("proof %q is not a compact JWS", proof)
	}
	jws, err := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse proof: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("%d signatures, want 1", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if h.Algorithm != "ES256" {
		t.Errorf("alg = %q, want ES256", h.Algorithm)
	}
	if h.KeyID != "" {
		t.Errorf("kid = %q: a proof names its key by jwk alone", h.KeyID)
	}
	if h.JSONWebKey == nil {
		t.Fatal("no jwk header")
	}
	if !h.JSONWebKey.IsPublic() {
		t.Fatal("jwk header holds a private key")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("proof does not verify with its own jwk: %v", err)
	}
	var p parsed
	p.typ, _ = h.ExtraHeaders["typ"].(string)
	p.jwk = *h.JSONWebKey
	if err := json.Unmarshal(payload, &p.claims); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(payload, &p.raw)
	// The raw header must carry no private member either.
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(proof, ".")[0])
	var rawHdr map[string]json.RawMessage
	json.Unmarshal(hdr, &rawHdr)
	var rawJWK map[string]any
	json.Unmarshal(rawHdr["jwk"], &rawJWK)
	if _, ok := rawJWK["d"]; ok {
		t.Fatalf("jwk header has d: %s", rawHdr["jwk"])
	}
	return p
}

func TestProof(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name                   string
		htm, htu, token, nonce string
		wantHTU                string
	}{
		{"token endpoint", "POST", "https://op.example/token", "", "", "https://op.example/token"},
		{"with nonce", "POST", "https://op.example/token", "", "n-1_x", "https://op.example/token"},
		{"resource with token", "GET", "https://api.example:8443/v1/items", "at.xyz", "", "https://api.example:8443/v1/items"},
		{"query and fragment dropped", "DELETE", "https://api.example/v1/items/7?force=1&x=y#frag", "at", "srv", "https://api.example/v1/items/7"},
		{"empty query dropped", "PUT", "https://api.example/a?", "at", "", "https://api.example/a"},
		{"escaped path kept", "GET", "https://api.example/a%2Fb/c", "at", "", "https://api.example/a%2Fb/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proof, err := k.Proof(tt.htm, tt.htu, tt.token, tt.nonce, now)
			if err != nil {
				t.Fatal(err)
			}
			p := parseProof(t, proof)
			if p.typ != "dpop+jwt" {
				t.Errorf("typ = %q, want dpop+jwt", p.typ)
			}
			tp, _ := p.jwk.Thumbprint(crypto.SHA256)
			if got := base64.RawURLEncoding.EncodeToString(tp); got != k.Thumbprint() {
				t.Errorf("jwk thumbprint %s != key thumbprint %s", got, k.Thumbprint())
			}
			if p.claims["htm"] != tt.htm {
				t.Errorf("htm = %v, want %s", p.claims["htm"], tt.htm)
			}
			if p.claims["htu"] != tt.wantHTU {
				t.Errorf("htu = %v, want %s", p.claims["htu"], tt.wantHTU)
			}
			if string(p.raw["iat"]) != "1800000000" {
				t.Errorf("iat = %s, want 1800000000 (a JSON number)", p.raw["iat"])
			}
			jti, _ := p.claims["jti"].(string)
			if b, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(b) < 16 {
				t.Errorf("jti %q: want at least 128 random bits", jti)
			}
			ath, hasATH := p.claims["ath"]
			if tt.token == "" && hasATH {
				t.Errorf("ath = %v without a token", ath)
			}
			if tt.token != "" {
				sum := sha256.Sum256([]byte(tt.token))
				if want := base64.RawURLEncoding.EncodeToString(sum[:]); ath != want {
					t.Errorf("ath = %v, want %s", ath, want)
				}
			}
			nonce, hasNonce := p.claims["nonce"]
			if tt.nonce == "" && hasNonce {
				t.Errorf("nonce = %v, none given", nonce)
			}
			if tt.nonce != "" && nonce != tt.nonce {
				t.Errorf("nonce = %v, want %s", nonce, tt.nonce)
			}
			for c := range p.claims {
				switch c {
				case "jti", "htm", "htu", "iat", "ath", "nonce":
				default:
					t.Errorf("unexpected claim %q", c)
				}
			}
		})
	}
}

func TestProofJTIUnique(t *testing.T) {
	k, _ := NewKey()
	seen := map[string]bool{}
	for range 100 {
		proof, err := k.Proof("GET", "https://api.example/", "at", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		jti := parseProof(t, proof).claims["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %s repeated", jti)
		}
		seen[jti] = true
	}
}

func TestProofBadHTU(t *testing.T) {
	k, _ := NewKey()
	for _, htu := range []string{"", "/token", "op.example/token", "https://", "http://[::1"} {
		if _, err := k.Proof("POST", htu, "", "", time.Now()); err == nil {
			t.Errorf("htu %q: proof made, want error", htu)
		}
	}
}

func TestKeysDiffer(t *testing.T) {
	a, _ := NewKey()
	b, _ := NewKey()
	if a.Thumbprint() == b.Thumbprint() {
		t.Fatal("two new keys have one thumbprint")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	k, _ := NewKey()
	b, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 32 {
		t.Fatalf("marshalled key is %d bytes, want the 32-byte scalar", len(b))
	}
	k2, err := ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Thumbprint() != k.Thumbprint() {
		t.Fatal("thumbprint changed across a round trip")
	}
	// A proof by the parsed key verifies with the original public key.
	proof, _ := k2.Proof("GET", "https://api.example/", "at", "", time.Now())
	jws, _ := jose.ParseSigned(proof, []jose.SignatureAlgorithm{jose.ES256})
	if _, err := jws.Verify(&k.priv.PublicKey); err != nil {
		t.Fatalf("parsed key signs for another public key: %v", err)
	}
}

func TestParseKeyRejects(t *testing.T) {
	n := []byte{ // the P-256 group order: not a valid scalar
		0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
	}
	for name, b := range map[string][]byte{
		"empty": nil, "short": make([]byte, 31), "long": make([]byte, 33),
		"zero": make([]byte, 32), "order": n, "all ones": bytes.Repeat([]byte{0xff}, 32),
	} {
		if _, err := ParseKey(b); err == nil {
			t.Errorf("%s: parsed, want error", name)
		}
	}
}

// TestKeyNeverPrinted: whatever path a key takes to a log line or a
// response — fmt verbs, slog, JSON — its private scalar does not.
func TestKeyNeverPrinted(t *testing.T) {
	k, _ := NewKey()
	scalar, _ := k.MarshalBinary()
	secrets := []string{
		base64.RawURLEncoding.EncodeToString(scalar), base64.StdEncoding.EncodeToString(scalar),
		fmt.Sprintf("%x", scalar), k.priv.D.String(),
	}
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		fmt.Fprintf(&out, verb+"\n", k)
		fmt.Fprintf(&out, verb+"\n", *k)
		fmt.Fprintf(&out, verb+"\n", struct{ K *Key }{k})
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "key", k)
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "key", k)
	if b, err := json.Marshal(struct{ K *Key }{k}); err == nil {
		out.Write(b)
	}
	for _, s := range secrets {
		if strings.Contains(out.String(), s) {
			t.Fatalf("private key printed:\n%s", out.String())
		}
	}
	if !strings.Contains(out.String(), k.Thumbprint()) {
		t.Fatalf("output does not even name the key:\n%s", out.String())
	}
}

// BenchmarkProof is the CPU cost of one DPoP proof, what oidc.dpop adds to
// every proxied request, next to the ECDSA P-256 signature inside it (the
// floor: the rest is go-jose's JSON and base64 work).
//
//	go test -run '^$' -bench BenchmarkProof -benchmem -count 3 ./internal/dpop/
func BenchmarkProof(b *testing.B) {
	k, _ := NewKey()
	now := time.Now()
	b.Run("proof", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Proof("GET", "https://api.example/v1/items?page=2", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.sig", "nonce-1", now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ecdsa-sign", func(b *testing.B) {
		b.ReportAllocs()
		digest := sha256.Sum256([]byte("header.payload"))
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

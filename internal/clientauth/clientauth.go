// Package clientauth authenticates moat to the IdP with private_key_jwt
// (OIDC Core §9, RFC 7523 §2.2): instead of a shared secret, every
// client-authenticated request (token, refresh, PAR, revocation) carries a
// short-lived JWT signed with a private key that never leaves moat. The IdP
// knows only the public key, registered or fetched from moat's jwks_uri.
package clientauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionType is client_assertion_type for a JWT (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Lifetime of an assertion: long enough for one request and a clock skew,
// short enough that a captured one is soon worthless.
const Lifetime = 60 * time.Second

// Keys are moat's client keys. The first signs; all are published, so a
// new key can be registered (or fetched) at the IdP before it signs, and
// an old one kept until the IdP has forgotten it.
type Keys struct {
	keys []jose.JSONWebKey // private
}

// Load reads keys from a file: PEM (PKCS #8, EC or RSA private keys, one
// or more) or a JWK set holding private keys. A key without a kid gets its
// RFC 7638 thumbprint.
func Load(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse reads keys from the contents of a key file; see Load.
func Parse(b []byte) (*Keys, error) {
	var keys []jose.JSONWebKey
	if trimmed := strings.TrimSpace(string(b)); strings.HasPrefix(trimmed, "{") {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("not a JWK set: %w", err)
		}
		keys = set.Keys
	} else {
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			k, err := parsePEM(block)
			if err != nil {
				return nil, err
			}
			keys = append(keys, jose.JSONWebKey{Key: k})
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no private key found (want PEM private keys or a JWK set)")
	}
	for i := range keys {
		k := &keys[i]
		if k.IsPublic() {
			return nil, fmt.Errorf("key %d is a public key; the file must hold private keys", i)
		}
		if k.Algorithm == "" {
			alg, err := algorithmFor(k.Key)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			k.Algorithm = alg
		}
		// A JWK's own alg (RS256, say) skips algorithmFor: its key must
		// still be big enough and able to sign with that alg.
		if r, ok := k.Key.(*rsa.PrivateKey); ok && r.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("key %d: RSA keys must have at least %d bits", i, minRSABits)
		}
		if _, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k.Key}, nil); err != nil {
			return nil, fmt.Errorf("key %d: alg %q cannot sign with this key: %w", i, k.Algorithm, err)
		}
		if k.KeyID == "" {
			tp, err := k.Thumbprint(crypto.SHA256)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			k.KeyID = base64.RawURLEncoding.EncodeToString(tp)
		}
		k.Use = "sig"
	}
	return &Keys{keys: keys}, nil
}

func parsePEM(block *pem.Block) (any, error) {
	switch block.Type {
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}

// minRSABits is the smallest RSA key moat signs with (FAPI 2.0 §5.4.1, RFC 7518 §3.3).
const minRSABits = 2048

// algorithmFor picks the JWS algorithm for a key: ES256 for P-256,
// EdDSA for Ed25519, PS256 for RSA (FAPI 2.0 §5.4.1 allows only PS256,
// ES256 and EdDSA; RS256 needs an explicit "alg" in a JWK set).
func algorithmFor(k any) (string, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("only P-256 EC keys are supported")
		}
		return string(jose.ES256), nil
	case ed25519.PrivateKey:
		return string(jose.EdDSA), nil
	case *rsa.PrivateKey:
		return string(jose.PS256), nil // Parse checks its size
	}
	return "", fmt.Errorf("unsupported key type %T", k)
}

// FAPI2Algorithms returns the only JWS algorithms FAPI 2.0 allows (§5.4.1),
// for the client's keys and the IdP's ID tokens alike.
func FAPI2Algorithms() []string { return []string{"PS256", "ES256", "EdDSA"} }

// Public returns the public keys, to register at the IdP or serve as a
// jwks_uri.
func (ks *Keys) Public() jose.JSONWebKeySet {
	var set jose.JSONWebKeySet
	for _, k := range ks.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	return set
}

// Signing returns the kid and alg of the key that signs.
func (ks *Keys) Signing() (kid, alg string) { return ks.keys[0].KeyID, ks.keys[0].Algorithm }

// Assertion returns a client assertion for clientID with audience aud (the
// IdP's issuer, RFC 9126 §2 and FAPI 2.0 §5.3.2.1, or its token endpoint,
// OIDC Core §9): iss and sub are the client, a fresh jti makes each one
// single-use, and it expires after Lifetime.
func (ks *Keys) Assertion(clientID, aud string, now time.Time) (string, error) {
	k := ks.keys[0]
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	var jti [16]byte
	rand.Read(jti[:])
	claims := jwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud},
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		Expiry: jwt.NewNumericDate(now.Add(Lifetime)),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// Generate makes a new private key for alg (ES256, EdDSA or PS256) and
// returns it as PKCS #8 PEM.
func Generate(alg string) ([]byte, error) {
	var key any
	var err error
	switch alg {
	case "ES256", "":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "PS256":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("alg %q: use ES256, EdDSA or PS256", alg)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

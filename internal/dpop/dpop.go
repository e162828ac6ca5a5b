// Package dpop makes DPoP proofs (RFC 9449): each session holds its own
// P-256 key, and every request that uses or obtains its tokens carries a
// fresh JWT signed with that key. A token bound to the key (its cnf.jkt is
// the key's thumbprint) is worthless to whoever steals it without the key,
// and the key never leaves moat.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Algorithm is the only proof algorithm moat signs with: ES256 is the one
// every DPoP server must accept in practice, and FAPI 2.0 §5.4.1 allows it.
const Algorithm = "ES256"

// Header is the request header that carries a proof (RFC 9449 §4.1) and
// NonceHeader the response header that carries a server nonce (§8, §9).
const (
	Header      = "DPoP"
	NonceHeader = "DPoP-Nonce"
)

// proofType is the typ header of a proof (RFC 9449 §4.2).
const proofType = "dpop+jwt"

// Key is a DPoP key pair. Its private part is only ever written by
// MarshalBinary, for the sealed session record; String shows the
// thumbprint, and JSON refuses it.
type Key struct {
	priv   *ecdsa.PrivateKey
	signer jose.Signer
	thumb  string
}

// NewKey makes a fresh ES256 key.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newKey(priv)
}

func newKey(priv *ecdsa.PrivateKey) (*Key, error) {
	pub := &jose.JSONWebKey{Key: &priv.PublicKey}
	jwk, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("dpop key: %w", err)
	}
	// The public JWK is the same in every proof: marshalled once here, not
	// per proof (go-jose's EmbedJWK would).
	opts := (&jose.SignerOptions{}).WithType(proofType).WithHeader("jwk", json.RawMessage(jwk))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("dpop key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("dpop key: %w", err)
	}
	return &Key{priv: priv, signer: signer, thumb: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url: the dpop_jkt of a PAR or authorization request (RFC 9449 §10)
// and the cnf.jkt of a bound token (§6).
func (k *Key) Thumbprint() string { return k.thumb }

// String shows the thumbprint, never the private key.
func (k Key) String() string { return "dpop key " + k.thumb }

// MarshalJSON refuses: a key reaches JSON (a log line, a response) only by
// mistake.
func (k Key) MarshalJSON() ([]byte, error) {
	return nil, errors.New("dpop: a key is never marshalled to JSON")
}

// keyLen is the size of a P-256 scalar: the whole of a marshalled key.
const keyLen = 32

// MarshalBinary returns the 32-byte private scalar, the most compact form
// for a session record (the public key is derived again by ParseKey).
func (k *Key) MarshalBinary() ([]byte, error) { return k.priv.Bytes() }

// ParseKey reads a key written by MarshalBinary.
func ParseKey(b []byte) (*Key, error) {
	if len(b) != keyLen {
		return nil, fmt.Errorf("dpop key: %d bytes, want %d", len(b), keyLen)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("dpop key: %w", err)
	}
	return newKey(priv)
}

// claims are a proof's claims (RFC 9449 §4.2).
type claims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof returns a DPoP proof for one request (RFC 9449 §4.2): htm is the
// method, htu the target URI without query and fragment, ath the hash of
// accessToken when one is sent with the request (§4.3: omitted at the
// token endpoint), nonce the server's latest DPoP-Nonce if it gave one
// (§8, §9). Each proof has a fresh random jti, so a server can reject
// replays.
func (k *Key) Proof(htm, htu, accessToken, nonce string, now time.Time) (string, error) {
	u, err := url.Parse(htu)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("dpop proof: htu %q is not an absolute URL", htu)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	var jti [16]byte
	rand.Read(jti[:])
	c := claims{
		JTI: base64.RawURLEncoding.EncodeToString(jti[:]),
		HTM: htm, HTU: u.String(), IAT: now.Unix(), Nonce: nonce,
	}
	if accessToken != "" {
		c.ATH = TokenHash(accessToken)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("dpop proof: %w", err)
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop proof: %w", err)
	}
	return jws.CompactSerialize()
}

// TokenHash is the ath of a proof: base64url(SHA-256(token)) (RFC 9449 §4.2).
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

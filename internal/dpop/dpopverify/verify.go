// Package dpopverify checks DPoP proofs (RFC 9449) on the receiving side:
// an authorization server's token endpoint or a resource server. moat
// itself only sends proofs; this package serves its test OP, its test
// upstreams and Go resource servers placed behind moat.
package dpopverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Supported are the proof algorithms this package can verify: asymmetric
// only (RFC 9449 §4.2 forbids none and MACs). RS256 is off by default;
// FAPI 2.0 §5.4.1 allows only PS256, ES256 and EdDSA.
var Supported = []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.EdDSA, jose.RS256}

// DefaultAlgs are the algorithms a Verifier accepts unless told otherwise.
var DefaultAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.EdDSA}

const (
	// DefaultWindow is how far a proof's iat may lie from the verifier's
	// clock, either way (RFC 9449 §11.1 leaves the window to the server).
	DefaultWindow = 60 * time.Second
	// DefaultMaxProofs bounds the replay cache.
	DefaultMaxProofs = 1 << 16
	// maxProofLen caps a DPoP header before it is parsed.
	maxProofLen = 8 << 10
	minRSABits  = 2048
)

// Options configure a Verifier. The zero value verifies with DefaultAlgs,
// DefaultWindow, the wall clock and no nonces.
type Options struct {
	// Algs is the allow-list of proof algorithms, a subset of Supported.
	Algs []jose.SignatureAlgorithm
	// Window is the accepted distance between iat and now, either way.
	Window time.Duration
	// MaxProofs bounds the replay cache (see Replay).
	MaxProofs int
	// Now is the clock.
	Now func() time.Time
	// Nonces, if set, makes every proof carry one of its nonces
	// (RFC 9449 §8, §9).
	Nonces *Nonces
}

// Verifier checks proofs per RFC 9449 §4.3. It is safe for concurrent use.
type Verifier struct {
	algs   []jose.SignatureAlgorithm
	window time.Duration
	now    func() time.Time
	nonces *Nonces
	replay *replayCache
}

// New returns a Verifier, or an error naming an algorithm it cannot offer.
func New(o Options) (*Verifier, error) {
	v := &Verifier{algs: o.Algs, window: o.Window, now: o.Now, nonces: o.Nonces}
	if len(v.algs) == 0 {
		v.algs = DefaultAlgs
	}
	for _, a := range v.algs {
		if !supported(a) {
			return nil, fmt.Errorf("dpopverify: algorithm %q is not one of %v", a, Supported)
		}
	}
	if v.window <= 0 {
		v.window = DefaultWindow
	}
	if v.now == nil {
		v.now = time.Now
	}
	max := o.MaxProofs
	if max <= 0 {
		max = DefaultMaxProofs
	}
	v.replay = newReplayCache(max)
	return v, nil
}

func supported(a jose.SignatureAlgorithm) bool {
	for _, s := range Supported {
		if a == s {
			return true
		}
	}
	return false
}

// Algs returns the accepted algorithms, for dpop_signing_alg_values_supported
// and the algs parameter of WWW-Authenticate (RFC 9449 §5.1, §7.1).
func (v *Verifier) Algs() []string {
	out := make([]string, len(v.algs))
	for i, a := range v.algs {
		out[i] = string(a)
	}
	return out
}

// Nonces returns the nonce source, or nil.
func (v *Verifier) Nonces() *Nonces { return v.nonces }

// Request describes the HTTP request a proof came with.
type Request struct {
	// Method is the request method, compared with htm.
	Method string
	// URL is the request's absolute URI as the server sees it; query and
	// fragment are ignored when compared with htu.
	URL string
	// AccessToken, when the proof accompanies one (a resource request),
	// must hash to the proof's ath.
	AccessToken string
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's key, base64url:
	// the value of cnf.jkt in a token bound to it (RFC 9449 §6).
	JKT      string
	Key      jose.JSONWebKey
	ID       string // jti
	Nonce    string
	IssuedAt time.Time
}

type claims struct {
	JTI   string           `json:"jti"`
	HTM   string           `json:"htm"`
	HTU   string           `json:"htu"`
	IAT   *jwt.NumericDate `json:"iat"`
	ATH   *string          `json:"ath"`
	Nonce *string          `json:"nonce"`
}

// Verify makes the checks of RFC 9449 §4.3 on the DPoP header values of
// one request, ath among them when Request.AccessToken is set. The
// jti is remembered only once everything else holds, so a refused proof
// can be fixed and sent again. Errors are *Error.
func (v *Verifier) Verify(headers []string, r Request) (*Proof, error) {
	// One header holding one JWT.
	switch {
	case len(headers) == 0:
		return nil, proofErr(ErrMissing, "no DPoP header")
	case len(headers) > 1:
		return nil, proofErr(ErrMalformed, "more than one DPoP header")
	case len(headers[0]) > maxProofLen:
		return nil, proofErr(ErrMalformed, "DPoP header too long")
	}
	// go-jose parses: the compact form only, algorithms from the allow-list.
	tok, err := jwt.ParseSigned(headers[0], v.algs)
	if err != nil {
		return nil, proofErr(ErrMalformed, "not a compact JWS with an allowed algorithm", err)
	}
	if len(tok.Headers) != 1 {
		return nil, proofErr(ErrMalformed, "not exactly one signature")
	}
	h := tok.Headers[0]
	// Explicit typing.
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "dpop+jwt") {
		return nil, proofErr(ErrType, "typ is not dpop+jwt")
	}
	// A public key of the algorithm's type in jwk; the signature by it.
	if h.JSONWebKey == nil {
		return nil, proofErr(ErrKey, "no jwk header")
	}
	key := *h.JSONWebKey
	if err := keyFits(key, jose.SignatureAlgorithm(h.Algorithm)); err != nil {
		return nil, proofErr(ErrKey, "jwk header unusable", err)
	}
	var c claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return nil, proofErr(ErrSignature, "signature or claims invalid", err)
	}
	// The required claims.
	if c.JTI == "" || c.HTM == "" || c.HTU == "" || c.IAT == nil {
		return nil, proofErr(ErrMalformed, "jti, htm, htu and iat are required")
	}
	if c.HTM != r.Method {
		return nil, proofErr(ErrMethod, "htm is not the request method")
	}
	// htu, normalised (RFC 3986 §6.2.2, §6.2.3) as §4.3 recommends.
	want, err := NormalizeURI(r.URL)
	if err != nil {
		return nil, proofErr(ErrURI, "request URI unusable", err)
	}
	got, err := NormalizeURI(c.HTU)
	if err != nil || got != want {
		return nil, proofErr(ErrURI, "htu is not the request URI")
	}
	// The server's nonce (§8, §9).
	nonce := ""
	if c.Nonce != nil {
		nonce = *c.Nonce
	}
	if v.nonces != nil && !v.nonces.Valid(nonce) {
		e := proofErr(ErrNonce, "nonce missing or stale")
		e.Code, e.Nonce = CodeUseNonce, v.nonces.Current()
		return nil, e
	}
	now := v.now()
	iat := c.IAT.Time()
	if iat.Before(now.Add(-v.window)) || iat.After(now.Add(v.window)) {
		return nil, proofErr(ErrStale, "iat outside the accepted window")
	}
	// ath, when a token came with the proof (§4.3, §7.1).
	if r.AccessToken != "" {
		sum := sha256.Sum256([]byte(r.AccessToken))
		ath := base64.RawURLEncoding.EncodeToString(sum[:])
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(ath)) != 1 {
			return nil, proofErr(ErrAccessTokenHash, "ath does not match the access token")
		}
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, proofErr(ErrKey, "no thumbprint", err)
	}
	p := &Proof{JKT: base64.RawURLEncoding.EncodeToString(tp), Key: key, ID: c.JTI, Nonce: nonce, IssuedAt: iat}
	// §11.1: a proof is accepted once within its window.
	if !v.replay.add(p.JKT, c.JTI, iat, v.window, now) {
		return nil, proofErr(ErrReplay, "jti already used, or iat too old for a full replay cache")
	}
	return p, nil
}

// Bound checks that a token bound to jkt (its cnf.jkt, RFC 9449 §6) was
// presented with a proof of that key (§4.3, §7.1). An unbound
// token is refused: it is not a DPoP token.
func (p *Proof) Bound(jkt string) error {
	if jkt == "" {
		return &Error{Code: CodeInvalidToken, Description: "the access token is not DPoP-bound", err: ErrNotBound}
	}
	if subtle.ConstantTimeCompare([]byte(jkt), []byte(p.JKT)) != 1 {
		return proofErr(ErrBinding, "the proof's key is not the one the access token is bound to")
	}
	return nil
}

// keyFits checks that the embedded key is a valid public key of the type
// and size alg needs; go-jose would otherwise accept, e.g., a P-384 key
// under ES256 or a 1024-bit RSA key.
func keyFits(k jose.JSONWebKey, alg jose.SignatureAlgorithm) error {
	if !k.Valid() || !k.IsPublic() {
		return errors.New("not a valid public key")
	}
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		if alg == jose.ES256 && key.Curve == elliptic.P256() {
			return nil
		}
	case *rsa.PublicKey:
		if alg == jose.PS256 || alg == jose.RS256 {
			if key.N.BitLen() < minRSABits {
				return fmt.Errorf("RSA key of %d bits, want at least %d", key.N.BitLen(), minRSABits)
			}
			return nil
		}
	case ed25519.PublicKey:
		if alg == jose.EdDSA {
			return nil
		}
	}
	return fmt.Errorf("a %T does not sign %s", k.Key, alg)
}

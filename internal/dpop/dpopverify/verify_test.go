package dpopverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

const (
	tokenURL = "https://op.example/token"
	apiURL   = "https://api.example/v1/items"
	token    = "access-token-1"
)

var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey
	ec384Key *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
	rsaSmall *rsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ec384Key, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsaSmall, _ = rsa.GenerateKey(rand.Reader, 1024)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
	})
}

// spec describes a proof to build; the zero value of each field means the
// correct value.
type spec struct {
	alg    jose.SignatureAlgorithm
	signer any // private key; ecKey when nil
	jwk    any // key placed in the jwk header; signer's public key when nil
	noJWK  bool
	typ    *string
	claims map[string]any // merged over the defaults; a nil value deletes
}

func build(t testing.TB, s spec) string {
	t.Helper()
	keys(t)
	if s.alg == "" {
		s.alg = jose.ES256
	}
	if s.signer == nil {
		s.signer = ecKey
	}
	if s.jwk == nil {
		s.jwk = s.signer.(crypto.Signer).Public()
	}
	typ := "dpop+jwt"
	if s.typ != nil {
		typ = *s.typ
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderType, typ)
	if !s.noJWK {
		opts = opts.WithHeader("jwk", jose.JSONWebKey{Key: s.jwk})
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.signer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{"jti": randID(), "htm": "POST", "htu": tokenURL, "iat": t0.Unix()}
	for k, v := range s.claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func ath(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

func newVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return t0 }
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ptr(s string) *string { return &s }

func TestVerify(t *testing.T) {
	keys(t)
	tokenReq := Request{Method: "POST", URL: tokenURL}
	apiReq := Request{Method: "GET", URL: apiURL + "?page=2", AccessToken: token}
	apiClaims := map[string]any{"htm": "GET", "htu": apiURL, "ath": ath(token)}
	cases := []struct {
		name string
		spec spec
		req  Request
		opts Options
		want error // nil: accepted
	}{
		{"ES256 at the token endpoint", spec{}, tokenReq, Options{}, nil},
		{"PS256", spec{alg: jose.PS256, signer: rsaKey}, tokenReq, Options{}, nil},
		{"EdDSA", spec{alg: jose.EdDSA, signer: edKey}, tokenReq, Options{}, nil},
		{"RS256 by default", spec{alg: jose.RS256, signer: rsaKey}, tokenReq, Options{}, ErrMalformed},
		{"RS256 when allowed", spec{alg: jose.RS256, signer: rsaKey}, tokenReq, Options{Algs: []jose.SignatureAlgorithm{jose.RS256}}, nil},
		{"ES256 not in the allow-list", spec{}, tokenReq, Options{Algs: []jose.SignatureAlgorithm{jose.PS256}}, ErrMalformed},
		{"API call with ath", spec{claims: apiClaims}, apiReq, Options{}, nil},
		{"no typ", spec{typ: ptr("")}, tokenReq, Options{}, ErrType},
		{"typ JWT", spec{typ: ptr("JWT")}, tokenReq, Options{}, ErrType},
		{"no jwk", spec{noJWK: true}, tokenReq, Options{}, ErrKey},
		{"jwk of another key", spec{jwk: ecKeyOther().Public()}, tokenReq, Options{}, ErrSignature},
		{"P-384 jwk under ES256", spec{jwk: ec384Key.Public()}, tokenReq, Options{}, ErrKey},
		{"EC jwk under PS256", spec{alg: jose.PS256, signer: rsaKey, jwk: ecKey.Public()}, tokenReq, Options{}, ErrKey},
		{"1024-bit RSA", spec{alg: jose.PS256, signer: rsaSmall}, tokenReq, Options{}, ErrKey},
		{"no jti", spec{claims: map[string]any{"jti": nil}}, tokenReq, Options{}, ErrMalformed},
		{"no htm", spec{claims: map[string]any{"htm": nil}}, tokenReq, Options{}, ErrMalformed},
		{"no htu", spec{claims: map[string]any{"htu": nil}}, tokenReq, Options{}, ErrMalformed},
		{"no iat", spec{claims: map[string]any{"iat": nil}}, tokenReq, Options{}, ErrMalformed},
		{"iat a string", spec{claims: map[string]any{"iat": "now"}}, tokenReq, Options{}, ErrSignature},
		{"wrong htm", spec{claims: map[string]any{"htm": "GET"}}, tokenReq, Options{}, ErrMethod},
		{"htm in lower case", spec{claims: map[string]any{"htm": "post"}}, tokenReq, Options{}, ErrMethod},
		{"wrong htu path", spec{claims: map[string]any{"htu": "https://op.example/par"}}, tokenReq, Options{}, ErrURI},
		{"wrong htu host", spec{claims: map[string]any{"htu": "https://evil.example/token"}}, tokenReq, Options{}, ErrURI},
		{"wrong htu scheme", spec{claims: map[string]any{"htu": "http://op.example/token"}}, tokenReq, Options{}, ErrURI},
		{"wrong htu port", spec{claims: map[string]any{"htu": "https://op.example:8443/token"}}, tokenReq, Options{}, ErrURI},
		{"htu not a URL", spec{claims: map[string]any{"htu": "token"}}, tokenReq, Options{}, ErrURI},
		{"htu normalised", spec{claims: map[string]any{"htu": "HTTPS://OP.Example:443/./%74oken?x=1#f"}}, tokenReq, Options{}, nil},
		{"iat 61 s old", spec{claims: map[string]any{"iat": t0.Add(-61 * time.Second).Unix()}}, tokenReq, Options{}, ErrStale},
		{"iat 61 s ahead", spec{claims: map[string]any{"iat": t0.Add(61 * time.Second).Unix()}}, tokenReq, Options{}, ErrStale},
		{"iat 59 s old", spec{claims: map[string]any{"iat": t0.Add(-59 * time.Second).Unix()}}, tokenReq, Options{}, nil},
		{"iat 5 min old, window 10 min", spec{claims: map[string]any{"iat": t0.Add(-5 * time.Minute).Unix()}}, tokenReq, Options{Window: 10 * time.Minute}, nil},
		{"no ath with a token", spec{claims: map[string]any{"htm": "GET", "htu": apiURL}}, apiReq, Options{}, ErrAccessTokenHash},
		{"ath of another token", spec{claims: map[string]any{"htm": "GET", "htu": apiURL, "ath": ath("other")}}, apiReq, Options{}, ErrAccessTokenHash},
		{"ath not base64url", spec{claims: map[string]any{"htm": "GET", "htu": apiURL, "ath": ath(token) + "="}}, apiReq, Options{}, ErrAccessTokenHash},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.opts)
			p, err := v.Verify([]string{build(t, tc.spec)}, tc.req)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p.JKT == "" || p.ID == "" {
					t.Fatalf("proof %+v", p)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidProof {
				t.Fatalf("err %v is not an invalid_dpop_proof *Error", err)
			}
		})
	}
}

var (
	otherOnce sync.Once
	otherKey  *ecdsa.PrivateKey
)

func ecKeyOther() *ecdsa.PrivateKey {
	otherOnce.Do(func() { otherKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader) })
	return otherKey
}

// TestVerifyRefusesForgedHeaders covers what go-jose must not build for us:
// alg none, a MAC, a private key in jwk, the JSON serialization.
func TestVerifyRefusesForgedHeaders(t *testing.T) {
	keys(t)
	v := newVerifier(t, Options{})
	req := Request{Method: "POST", URL: tokenURL}
	good := build(t, spec{})
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	ecJWK, _ := json.Marshal(jose.JSONWebKey{Key: ecKey.Public()})
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: ecKey})

	hmacSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "dpop+jwt").WithHeader("jwk", jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}))
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := hmacSigner.Sign([]byte(`{"jti":"x","htm":"POST","htu":"` + tokenURL + `","iat":` + itoa(t0.Unix()) + `}`))
	macProof, _ := mac.CompactSerialize()

	cases := map[string][]string{
		"alg none":             {enc([]byte(`{"alg":"none","typ":"dpop+jwt","jwk":`+string(ecJWK)+`}`)) + "." + parts[1] + "."},
		"HS256 with oct jwk":   {macProof},
		"private jwk":          {enc([]byte(`{"alg":"ES256","typ":"dpop+jwt","jwk":`+string(privJWK)+`}`)) + "." + parts[1] + "." + parts[2]},
		"JSON serialization":   {`{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
		"two headers":          {good, good},
		"no header":            nil,
		"empty header":         {""},
		"tampered payload":     {parts[0] + "." + enc([]byte(`{"jti":"y","htm":"POST","htu":"`+tokenURL+`","iat":`+itoa(t0.Unix())+`}`)) + "." + parts[2]},
		"oversized header":     {good + strings.Repeat("A", maxProofLen)},
		"Bearer token instead": {"eyJhbGciOiJFUzI1NiJ9"},
	}
	for name, hdrs := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(hdrs, req)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidProof {
				t.Fatalf("err = %v, want invalid_dpop_proof", err)
			}
		})
	}
	if _, err := v.Verify([]string{good}, req); err != nil {
		t.Fatalf("the untouched proof is refused: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestVerifyReplay(t *testing.T) {
	now := t0
	v := newVerifier(t, Options{Now: func() time.Time { return now }})
	req := Request{Method: "POST", URL: tokenURL}
	proof := build(t, spec{})
	if _, err := v.Verify([]string{proof}, req); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]string{proof}, req); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: err = %v", err)
	}
	// Another key may use the same jti.
	jti := "shared-jti"
	if _, err := v.Verify([]string{build(t, spec{claims: map[string]any{"jti": jti}})}, req); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]string{build(t, spec{signer: ecKeyOther(), claims: map[string]any{"jti": jti}})}, req); err != nil {
		t.Fatalf("same jti, other key: %v", err)
	}
	// Past the window the proof is stale, not forgotten-and-accepted.
	now = t0.Add(2 * time.Minute)
	if _, err := v.Verify([]string{proof}, req); !errors.Is(err, ErrStale) {
		t.Fatalf("late replay: err = %v", err)
	}
	// A refused proof does not burn its jti.
	v2 := newVerifier(t, Options{})
	bad := Request{Method: "GET", URL: tokenURL}
	p := build(t, spec{})
	if _, err := v2.Verify([]string{p}, bad); !errors.Is(err, ErrMethod) {
		t.Fatal(err)
	}
	if _, err := v2.Verify([]string{p}, req); err != nil {
		t.Fatalf("after a refusal: %v", err)
	}
}

// TestReplayCacheBounded: a full cache forgets its oldest proof, and
// refuses that proof (and anything not newer) from then on.
func TestReplayCacheBounded(t *testing.T) {
	now := t0
	v := newVerifier(t, Options{MaxProofs: 2, Now: func() time.Time { return now }})
	req := Request{Method: "POST", URL: tokenURL}
	at := func(d time.Duration) string {
		return build(t, spec{claims: map[string]any{"iat": t0.Add(d).Unix()}})
	}
	old, mid, newer := at(-30*time.Second), at(-20*time.Second), at(-10*time.Second)
	for _, p := range []string{old, mid, newer} {
		if _, err := v.Verify([]string{p}, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(v.replay.seen); n != 2 {
		t.Fatalf("cache holds %d proofs, want 2", n)
	}
	if _, err := v.Verify([]string{old}, req); !errors.Is(err, ErrReplay) {
		t.Fatalf("evicted proof replayed: err = %v", err)
	}
	if _, err := v.Verify([]string{at(-30 * time.Second)}, req); !errors.Is(err, ErrReplay) {
		t.Fatalf("a fresh proof as old as the evicted one: err = %v", err)
	}
	if _, err := v.Verify([]string{at(0)}, req); err != nil {
		t.Fatalf("a newer proof: %v", err)
	}
	// Entries leave when their window ends.
	now = t0.Add(2 * time.Minute)
	if _, err := v.Verify([]string{build(t, spec{claims: map[string]any{"iat": now.Unix()}})}, req); err != nil {
		t.Fatal(err)
	}
	if n := len(v.replay.seen); n != 1 {
		t.Fatalf("cache holds %d proofs after expiry, want 1", n)
	}
}

func TestVerifyNonce(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	nonces := NewNonces(5*time.Minute, clock)
	v := newVerifier(t, Options{Nonces: nonces, Now: clock})
	req := Request{Method: "POST", URL: tokenURL}
	withNonce := func(n any) string {
		return build(t, spec{claims: map[string]any{"nonce": n, "iat": now.Unix()}})
	}
	check := func(name, proof, wantNonce string, want error) {
		t.Helper()
		_, err := v.Verify([]string{proof}, req)
		if want == nil {
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return
		}
		var e *Error
		if !errors.Is(err, want) || !errors.As(err, &e) || e.Code != CodeUseNonce || e.Nonce != wantNonce {
			t.Fatalf("%s: err = %v (nonce %q), want use_dpop_nonce with %q", name, err, e.Nonce, wantNonce)
		}
	}
	first := nonces.Current()
	check("missing", withNonce(nil), first, ErrNonce)
	check("made up", withNonce("made-up"), first, ErrNonce)
	check("current", withNonce(first), "", nil)
	nonces.Rotate()
	second := nonces.Current()
	if second == first {
		t.Fatal("Rotate kept the nonce")
	}
	check("previous after a rotation", withNonce(first), "", nil)
	nonces.Rotate()
	check("two rotations old", withNonce(first), nonces.Current(), ErrNonce)
	// By the clock: one period makes the current one previous, two forget both.
	cur := nonces.Current()
	now = now.Add(5 * time.Minute)
	check("one period later", withNonce(cur), "", nil)
	now = now.Add(10 * time.Minute)
	check("two periods later", withNonce(cur), nonces.Current(), ErrNonce)
}

func TestBound(t *testing.T) {
	v := newVerifier(t, Options{})
	p, err := v.Verify([]string{build(t, spec{})}, Request{Method: "POST", URL: tokenURL})
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := (&jose.JSONWebKey{Key: ecKey.Public()}).Thumbprint(crypto.SHA256)
	if want := base64.RawURLEncoding.EncodeToString(tp); p.JKT != want {
		t.Fatalf("JKT %q, want RFC 7638 thumbprint %q", p.JKT, want)
	}
	if err := p.Bound(p.JKT); err != nil {
		t.Fatal(err)
	}
	otp, _ := (&jose.JSONWebKey{Key: ecKeyOther().Public()}).Thumbprint(crypto.SHA256)
	if err := p.Bound(base64.RawURLEncoding.EncodeToString(otp)); !errors.Is(err, ErrBinding) {
		t.Fatalf("other key: %v", err)
	}
	var e *Error
	if err := p.Bound(""); !errors.Is(err, ErrNotBound) || !errors.As(err, &e) || e.Code != CodeInvalidToken {
		t.Fatalf("unbound token: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, a := range []jose.SignatureAlgorithm{"none", jose.HS256, jose.ES384, "XX"} {
		if _, err := New(Options{Algs: []jose.SignatureAlgorithm{a}}); err == nil || !strings.Contains(err.Error(), string(a)) {
			t.Errorf("alg %s: err = %v", a, err)
		}
	}
	v, _ := New(Options{})
	if got := strings.Join(v.Algs(), " "); got != "ES256 PS256 EdDSA" {
		t.Errorf("default algs %q", got)
	}
}

func TestNormalizeURI(t *testing.T) {
	cases := map[string]string{
		"https://a.example":                "https://a.example/",
		"HTTPS://A.Example:443/x?q#f":      "https://a.example/x",
		"http://a.example:80/x":            "http://a.example/x",
		"http://a.example:8080/x":          "http://a.example:8080/x",
		"https://a.example:80/x":           "https://a.example:80/x",
		"http://[::1]:80/x":                "http://[::1]/x",
		"https://a.example/%7euser/%2f%2F": "https://a.example/~user/%2F%2F",
		"https://a.example/a/./b/../c/":    "https://a.example/a/c/",
		"https://a.example/a//b":           "https://a.example/a//b",
		"https://a.example/a/..":           "https://a.example/",
		"https://a.example/%zz":            "",
		"ftp://a.example/":                 "",
		"https://user@a.example/":          "",
		"/relative":                        "",
		"mailto:x@a.example":               "",
	}
	for in, want := range cases {
		got, err := NormalizeURI(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %q", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	keys(f)
	f.Add(build(f, spec{}), "POST", tokenURL, "")
	f.Add(build(f, spec{claims: map[string]any{"htm": "GET", "htu": apiURL, "ath": ath(token)}}), "GET", apiURL, token)
	f.Add(build(f, spec{alg: jose.EdDSA, signer: edKey}), "POST", tokenURL, "")
	f.Add("e30.e30.", "POST", "https://[::1]:0/%", "x")
	f.Fuzz(func(t *testing.T, header, method, url, tok string) {
		v := newVerifier(t, Options{Nonces: nil})
		req := Request{Method: method, URL: url, AccessToken: tok}
		p, err := v.Verify([]string{header}, req)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if p.JKT == "" || !p.Key.IsPublic() {
			t.Fatalf("accepted proof %+v", p)
		}
		if _, err := v.Verify([]string{header}, req); !errors.Is(err, ErrReplay) {
			t.Fatalf("accepted twice: %v", err)
		}
	})
}

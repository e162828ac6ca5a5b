package dpopverify

import (
	"errors"
	"testing"

	"github.com/moat-bff/moat/internal/dpop"
)

// TestVerifyMoatProofs: what moat's client (internal/dpop) sends passes,
// and is bound to the thumbprint it reports.
func TestVerifyMoatProofs(t *testing.T) {
	key, err := dpop.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	nonces := NewNonces(0, nil)
	v := newVerifier(t, Options{Nonces: nonces})
	proof := func(htm, htu, tok, nonce string) string {
		p, err := key.Proof(htm, htu, tok, nonce, t0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, err = v.Verify([]string{proof("POST", tokenURL, "", "")}, Request{Method: "POST", URL: tokenURL})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUseNonce {
		t.Fatalf("without nonce: %v", err)
	}
	p, err := v.Verify([]string{proof("POST", tokenURL, "", e.Nonce)}, Request{Method: "POST", URL: tokenURL})
	if err != nil {
		t.Fatal(err)
	}
	if p.JKT != key.Thumbprint() {
		t.Fatalf("verifier thumbprint %q, client's %q", p.JKT, key.Thumbprint())
	}
	p, err = v.Verify([]string{proof("GET", apiURL+"?page=2#x", token, nonces.Current())}, Request{Method: "GET", URL: apiURL + "?page=2", AccessToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Bound(key.Thumbprint()); err != nil {
		t.Fatal(err)
	}
	stale, _ := key.Proof("POST", tokenURL, "", nonces.Current(), t0.Add(-2*DefaultWindow))
	if _, err := v.Verify([]string{stale}, Request{Method: "POST", URL: tokenURL}); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
}

// BenchmarkVerify is what a resource server pays per request: one ES256
// proof from moat's client, with ath, checked and remembered.
func BenchmarkVerify(b *testing.B) {
	key, err := dpop.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, Options{})
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i], _ = key.Proof("GET", apiURL, token, "", t0)
	}
	req := Request{Method: "GET", URL: apiURL, AccessToken: token}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := v.Verify(proofs[i:i+1], req); err != nil {
			b.Fatal(err)
		}
	}
}

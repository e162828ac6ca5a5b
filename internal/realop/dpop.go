package realop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/moat-bff/moat/internal/dpop/dpopverify"
)

// DPoPBinding returns the cnf.jkt of an access token the provider issued,
// found as a resource server finds it (RFC 9449 §6): a JWT access token
// (RFC 9068, issued for a resource indicator) is verified against the
// provider's JWKS, an opaque one is introspected (RFC 7662 §2.2) and must
// be active. "" means the token is not DPoP-bound.
func (op *OP) DPoPBinding(ctx context.Context, token string) (string, error) {
	if strings.Count(token, ".") == 2 {
		return op.jwtBinding(ctx, token)
	}
	in, err := op.Introspection(token)
	if err != nil {
		return "", err
	}
	if active, _ := in["active"].(bool); !active {
		return "", errors.New("access token not active")
	}
	cnf, _ := in["cnf"].(map[string]any)
	jkt, _ := cnf["jkt"].(string)
	return jkt, nil
}

func (op *OP) jwtBinding(ctx context.Context, token string) (string, error) {
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	var set jose.JSONWebKeySet
	if err := op.getJSON(ctx, op.Issuer+"/.well-known/openid-configuration", &doc); err != nil {
		return "", err
	}
	if err := op.getJSON(ctx, doc.JWKSURI, &set); err != nil {
		return "", err
	}
	return dpopverify.JWTBinding(token, set, op.Issuer, time.Now())
}

func (op *OP) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := op.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Upstream is a resource server that accepts only the provider's
// DPoP-bound tokens with valid proofs (RFC 9449 §7.1), and records what
// it saw.
type Upstream struct {
	URL string
	// Nonces, when the upstream demands them (§9).
	Nonces *dpopverify.Nonces

	mu      sync.Mutex
	seen    []Seen
	refused []string
}

// Seen is one request the upstream let through.
type Seen struct {
	Path, Token string
	// JKT is the proof key's thumbprint, equal to the token's cnf.jkt.
	JKT   string
	Proof *dpopverify.Proof
}

// DPoPUpstream starts an Upstream for t; requireNonce makes it demand its
// own nonces (use_dpop_nonce with DPoP-Nonce).
func (op *OP) DPoPUpstream(t testing.TB, requireNonce bool) *Upstream {
	u := &Upstream{}
	if requireNonce {
		u.Nonces = dpopverify.NewNonces(0, nil)
	}
	v, err := dpopverify.New(dpopverify.Options{Nonces: u.Nonces})
	if err != nil {
		t.Fatal(err)
	}
	rs := &dpopverify.Resource{Verifier: v, Binding: op.DPoPBinding}
	ok := rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := dpopverify.FromContext(r.Context())
		_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		u.mu.Lock()
		u.seen = append(u.seen, Seen{Path: r.URL.Path, Token: tok, JKT: p.JKT, Proof: p})
		u.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "jkt": p.JKT})
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		ok.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			u.mu.Lock()
			u.refused = append(u.refused, fmt.Sprintf("%s %s: %d %s", r.Method, r.URL.Path, rec.Code, rec.Header().Get("WWW-Authenticate")))
			u.mu.Unlock()
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// Seen returns the requests let through so far.
func (u *Upstream) Seen() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.seen...)
}

// Refused returns the requests refused so far, with status and challenge.
func (u *Upstream) Refused() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.refused...)
}

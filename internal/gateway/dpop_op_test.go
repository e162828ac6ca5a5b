package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/dpop/dpopverify"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// dpopEnv is moat with oidc.dpop in front of the in-process OP speaking
// DPoP, its one route going to an upstream that takes only the OP's
// DPoP-bound tokens with valid proofs (oidctest.DPoPUpstream). It returns
// the proofs' keys the upstream let through, and how often it refused.
func dpopEnv(t *testing.T, mods ...any) (e *env, seen func() []string, refused func() int) {
	var mu sync.Mutex
	var jkts []string
	var refusals int
	var up *httptest.Server
	mods = append([]any{
		func(b *oidctest.Behavior) { b.DPoP = true },
		func(p *oidctest.Provider) {
			inner := p.DPoPUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				pr, _ := dpopverify.FromContext(r.Context())
				mu.Lock()
				jkts = append(jkts, pr.JKT)
				mu.Unlock()
				w.Write([]byte(`{"ok":true}`))
			}))
			up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec := httptest.NewRecorder()
				inner.ServeHTTP(rec, r)
				if rec.Code == http.StatusUnauthorized {
					mu.Lock()
					refusals++
					mu.Unlock()
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes())
			}))
			t.Cleanup(up.Close)
		},
		func(c *config.Config) {
			c.OIDC.DPoP = true
			c.Routes = []config.Route{{Prefix: "/resource/api/", Upstream: up.URL + "/api/"}}
		},
	}, mods...)
	e = newEnv(t, mods...)
	return e, func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), jkts...)
		}, func() int {
			mu.Lock()
			defer mu.Unlock()
			return refusals
		}
}

// TestDPoPAgainstStrictOP: against an OP that enforces RFC 9449 (proofs
// required, its nonces demanded and rotated), moat logs in with PAR, calls
// an upstream that verifies proof and cnf.jkt, and refreshes, each time
// with the session's one key, answering use_dpop_nonce once per change.
func TestDPoPAgainstStrictOP(t *testing.T) {
	e, seen, refused := dpopEnv(t, func(b *oidctest.Behavior) {
		b.DPoPRequired, b.DPoPRequireNonce, b.PAR, b.RequirePAR = true, true, true, true
	})
	b := e.browser()
	if r := b.login("/"); r.StatusCode != http.StatusFound || b.sessionCookie() == nil {
		t.Fatalf("login: %s %s (OP refused: %s)", r.Status, r.body, e.op.DPoPError())
	}
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("API call: %s %s", r.Status, r.body)
	}
	e.op.RotateDPoPNonce()
	e.clock.Advance(10 * time.Minute) // past the access token's expiry: a refresh
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("API call after a refresh with a rotated nonce: %s %s (OP refused: %s)", r.Status, r.body, e.op.DPoPError())
	}
	// The rotated nonce costs one refused refresh, retried once.
	if n := e.op.Grants("refresh_token"); n != 2 {
		t.Fatalf("%d refresh requests, want 2: one refused for the stale nonce, one retried", n)
	}
	jkts := seen()
	if len(jkts) != 2 || jkts[0] == "" || jkts[0] != jkts[1] || refused() != 0 {
		t.Fatalf("upstream saw keys %v, refused %d", jkts, refused())
	}
	parProof := 0
	for _, r := range e.op.Requests() {
		if r.Path == "/par" && r.DPoP != "" {
			parProof++
		}
		if (r.Path == "/token" || r.Path == "/par") && r.DPoP == "" {
			t.Errorf("%s without a proof", r.Path)
		}
	}
	if parProof != 2 { // the first lacked the nonce the OP had not yet given
		t.Fatalf("%d pushed requests with a proof, want 2", parProof)
	}
}

// TestDPoPMisbehavingOP: an OP that does not bind what moat asked to be
// bound is a clear failure, never a silent Bearer session.
func TestDPoPMisbehavingOP(t *testing.T) {
	for name, mod := range map[string]func(*oidctest.Behavior){
		"token_type Bearer despite the proof": func(b *oidctest.Behavior) { b.DPoPDowngrade = true },
		"a provider that knows no DPoP":       func(b *oidctest.Behavior) { b.DPoP = false },
	} {
		t.Run(name, func(t *testing.T) {
			e, seen, _ := dpopEnv(t, mod)
			b := e.browser()
			r := b.login("/")
			if b.sessionCookie() != nil || r.StatusCode < 400 {
				t.Fatalf("login with an unbound token: %s, cookie %v", r.Status, b.sessionCookie())
			}
			if strings.Contains(string(r.body), "at-") {
				t.Fatal("the error page shows a token")
			}
			if len(seen()) != 0 {
				t.Fatal("the upstream was called")
			}
		})
	}
	t.Run("no cnf in a DPoP token", func(t *testing.T) {
		e, seen, refused := dpopEnv(t, func(b *oidctest.Behavior) { b.DPoPDropCnf = true })
		b := e.browser()
		if r := b.login("/"); b.sessionCookie() == nil {
			t.Fatalf("login: %s", r.Status)
		}
		if r := b.api("GET", "/resource/api/x"); r.StatusCode == http.StatusOK || len(seen()) != 0 || refused() == 0 {
			t.Fatalf("API call with an unbound token: %s, upstream let through %d, refused %d", r.Status, len(seen()), refused())
		}
	})
}

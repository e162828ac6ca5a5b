package session_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/dpop/dpopverify"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
)

// TestDPoPKeyTravelsWithTheSession: a session's DPoP key, sealed in its
// record, comes out of every store the same key, so another replica (a
// second Manager on the same store) signs proofs the first one's tokens
// are bound to; the cache hands out one parsed key per session.
func TestDPoPKeyTravelsWithTheSession(t *testing.T) {
	for name, spec := range frontendStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store, err := backend.Open(ctx, spec, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			keys := session.NewKey()
			replica := func() *session.Manager {
				return session.NewManager(session.ManagerOptions{Store: store, Codec: codec(t, keys),
					IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour, Logger: slog.New(slog.DiscardHandler),
					CacheTTL: time.Minute, CacheSize: 100})
			}
			a, b := replica(), replica()
			key, _ := dpop.NewKey()
			raw, _ := key.MarshalBinary()
			w := httptest.NewRecorder()
			if _, err := a.Create(ctx, w, session.Session{Subject: "alice", DPoP: raw}); err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(w.Result().Cookies()[0])
			l, err := b.Load(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.DPoPKey()
			if err != nil || got == nil || got.Thumbprint() != key.Thumbprint() {
				t.Fatalf("replica b's key %v (%v), want %s", got, err, key.Thumbprint())
			}
			proof, _ := got.Proof(http.MethodGet, "https://api.example/x", "at", "", time.Now())
			v, _ := dpopverify.New(dpopverify.Options{})
			p, err := v.Verify([]string{proof}, dpopverify.Request{Method: http.MethodGet, URL: "https://api.example/x", AccessToken: "at"})
			if err != nil || p.Bound(key.Thumbprint()) != nil {
				t.Fatalf("replica b's proof is not bound to the session's key: %v", err)
			}
			// Cached: the same parsed key for every request.
			l2, _ := b.Load(ctx, r)
			if k2, _ := l2.DPoPKey(); k2 != got {
				t.Error("the cached session parsed its key again")
			}
		})
	}
}

// TestDPoPKeyAbsentOrBroken: a session without a key has none (a Bearer
// session); a record whose key does not parse is an error, never a
// silent Bearer session.
func TestDPoPKeyAbsentOrBroken(t *testing.T) {
	if k, err := (&session.Loaded{}).DPoPKey(); k != nil || err != nil {
		t.Fatalf("no key: %v, %v", k, err)
	}
	if k, err := (&session.Loaded{Session: session.Session{DPoP: make([]byte, 32)}}).DPoPKey(); k != nil || err == nil {
		t.Fatalf("zero scalar: %v, %v; want an error", k, err)
	}
}

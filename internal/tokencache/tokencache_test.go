package tokencache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// TestRenewOnePerKey: concurrent callers with one key share one IdP
// request and its answer; another key gets its own.
func TestRenewOnePerKey(t *testing.T) {
	r := New(time.Second, func() time.Time { return t0 })
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func(context.Context) (oidc.Tokens, error) {
		n := calls.Add(1)
		<-release
		return oidc.Tokens{AccessToken: string(rune('a' + n - 1)), Expiry: t0.Add(time.Hour)}, nil
	}
	var mu sync.Mutex
	kept := map[string]session.Tokens{}
	keep := func(key string) func(session.Tokens) {
		return func(t session.Tokens) { mu.Lock(); kept[key] = t; mu.Unlock() }
	}
	var wg sync.WaitGroup
	got := make([]string, 50)
	for i := range got {
		wg.Go(func() { got[i], _ = r.Renew(t.Context(), "k", session.Tokens{}, fetch, keep("k")) })
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others join the flight
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d IdP requests for 50 concurrent callers, want 1", n)
	}
	for _, tok := range got {
		if tok != "a" {
			t.Fatalf("callers got %q, want the one token a", got)
		}
	}
	if tok, _ := r.Renew(t.Context(), "other", session.Tokens{}, fetch, keep("other")); tok != "b" || calls.Load() != 2 {
		t.Fatalf("another key got %q after %d requests, want its own token", tok, calls.Load())
	}
	if k := kept["k"]; k.AccessToken != "a" || !k.Obtained.Equal(t0) || !k.Expiry.Equal(t0.Add(time.Hour)) {
		t.Fatalf("kept %+v", k)
	}
}

// TestRenewFailure: a failed renewal hands out the cached token while it
// has not expired, and the IdP's error once it has (or when none is
// cached), keeping nothing.
func TestRenewFailure(t *testing.T) {
	down := errors.New("idp down")
	fail := func(context.Context) (oidc.Tokens, error) { return oidc.Tokens{}, down }
	cached := session.Tokens{AccessToken: "old", Expiry: t0.Add(time.Second), Obtained: t0.Add(-time.Minute)}
	for _, tc := range []struct {
		name   string
		now    time.Time
		cached session.Tokens
		want   string // "": the error
	}{
		{"cached still valid", t0, cached, "old"},
		{"cached expired", t0.Add(time.Second), cached, ""},
		{"nothing cached", t0, session.Tokens{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(time.Minute, func() time.Time { return tc.now })
			tok, err := r.Renew(t.Context(), "k", tc.cached, fail, func(session.Tokens) { t.Error("a failed renewal kept a token") })
			if tok != tc.want || (tc.want == "") != errors.Is(err, down) {
				t.Fatalf("= %q, %v; want %q", tok, err, tc.want)
			}
		})
	}
}

// TestRenewCallerGivesUp: a caller whose context ends gets its error at
// once, while the request it started finishes for the others and its
// token is kept.
func TestRenewCallerGivesUp(t *testing.T) {
	r := New(time.Minute, nil)
	release := make(chan struct{})
	fetchCtxErr := make(chan error, 1)
	kept := make(chan session.Tokens, 1)
	fetch := func(ctx context.Context) (oidc.Tokens, error) {
		<-release
		fetchCtxErr <- ctx.Err()
		return oidc.Tokens{AccessToken: "new"}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Renew(ctx, "k", session.Tokens{}, fetch, func(t session.Tokens) { kept <- t }); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled caller got %v", err)
	}
	close(release)
	select {
	case k := <-kept:
		if k.AccessToken != "new" || k.Expiry.Sub(k.Obtained) != DefaultLifetime {
			t.Fatalf("kept %+v; want the token, with DefaultLifetime for a response without expires_in", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request stopped with its first caller")
	}
	if err := <-fetchCtxErr; err != nil {
		t.Fatalf("the IdP request saw its caller's cancellation: %v", err)
	}
}

// TestFresh: the skew applies as session.Tokens.Fresh has it, with the
// Renewer's clock.
func TestFresh(t *testing.T) {
	now := t0
	r := New(10*time.Second, func() time.Time { return now })
	tok := session.Tokens{AccessToken: "at", Expiry: t0.Add(time.Minute), Obtained: t0}
	if !r.Fresh(tok) || r.Fresh(session.Tokens{}) {
		t.Fatal("Fresh at the start")
	}
	now = t0.Add(51 * time.Second)
	if r.Fresh(tok) {
		t.Fatal("a token within the skew is fresh")
	}
}

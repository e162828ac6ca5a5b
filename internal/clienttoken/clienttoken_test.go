package clienttoken

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/testclock"
	"github.com/moat-bff/moat/internal/tokencache"
)

type fakeSource struct {
	calls atomic.Int32
	delay time.Duration
	err   error
	ttl   time.Duration
	now   func() time.Time
	last  []string
	mu    sync.Mutex
}

func (f *fakeSource) ClientCredentials(ctx context.Context, scopes []string) (oidc.Tokens, error) {
	n := f.calls.Add(1)
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = scopes
	if f.err != nil {
		return oidc.Tokens{}, f.err
	}
	t := oidc.Tokens{AccessToken: "ct-" + string(rune('0'+n)), TokenType: "Bearer"}
	if f.ttl > 0 {
		t.Expiry = f.now().Add(f.ttl)
	}
	return t, nil
}

// TestOneRequestAtATime: a hundred concurrent callers get one token from
// one IdP request; it is renewed skew before it expires, and an IdP
// failure while it is still valid costs nobody a request.
func TestOneRequestAtATime(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	src := &fakeSource{delay: 20 * time.Millisecond, ttl: time.Minute, now: clk.Now}
	c := New(src, 10*time.Second, clk.Now)
	var wg sync.WaitGroup
	got := make([]string, 100)
	for i := range got {
		wg.Go(func() {
			tok, err := c.Token(t.Context(), []string{"orders:read"})
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		})
	}
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d IdP requests for 100 concurrent callers, want 1", n)
	}
	for _, tok := range got {
		if tok != "ct-1" {
			t.Fatalf("callers got %q, want ct-1", tok)
		}
	}

	clk.Advance(45 * time.Second) // 15 s left: still fresh
	if tok, _ := c.Token(t.Context(), []string{"orders:read"}); tok != "ct-1" || src.calls.Load() != 1 {
		t.Fatalf("a fresh token was renewed: %q after %d requests", tok, src.calls.Load())
	}
	clk.Advance(6 * time.Second) // 9 s left: within the skew
	if tok, _ := c.Token(t.Context(), []string{"orders:read"}); tok != "ct-2" {
		t.Fatalf("a token within the skew of its expiry was not renewed: %q", tok)
	}

	src.err = errors.New("idp down")
	clk.Advance(55 * time.Second) // 5 s left, renewal fails: the valid token is kept
	if tok, err := c.Token(t.Context(), []string{"orders:read"}); tok != "ct-2" || err != nil {
		t.Fatalf("renewal failure with a valid token = %q, %v; want the cached token", tok, err)
	}
	clk.Advance(10 * time.Second) // expired, renewal fails: an error
	if tok, err := c.Token(t.Context(), []string{"orders:read"}); err == nil {
		t.Fatalf("an expired token was handed out: %q", tok)
	}
}

// TestScopeSets: each scope set has its own token, whatever the order.
func TestScopeSets(t *testing.T) {
	clk := testclock.New(time.Now())
	src := &fakeSource{ttl: time.Hour, now: clk.Now}
	c := New(src, time.Minute, clk.Now)
	a, _ := c.Token(t.Context(), []string{"a", "b"})
	b, _ := c.Token(t.Context(), []string{"b", "a"})
	x, _ := c.Token(t.Context(), []string{"x"})
	if a != b || a == x || src.calls.Load() != 2 {
		t.Fatalf("tokens %q %q %q after %d requests; want one per scope set", a, b, x, src.calls.Load())
	}
	if len(src.last) != 1 || src.last[0] != "x" {
		t.Fatalf("asked for scopes %v, want [x]", src.last)
	}
}

// TestNoExpiry: a token without expires_in is renewed after
// tokencache.DefaultLifetime instead of being kept forever.
func TestNoExpiry(t *testing.T) {
	clk := testclock.New(time.Now())
	src := &fakeSource{now: clk.Now}
	c := New(src, time.Minute, clk.Now)
	c.Token(t.Context(), nil)
	clk.Advance(tokencache.DefaultLifetime)
	c.Token(t.Context(), nil)
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d requests, want a renewal after DefaultLifetime", n)
	}
}

// TestShortLivedTokenNotFetchedPerRequest: a token living less than the
// skew is kept for half its lifetime, as session tokens are
// (session.Tokens.Fresh), rather than fetched again on every request.
func TestShortLivedTokenNotFetchedPerRequest(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	src := &fakeSource{ttl: 20 * time.Second, now: clk.Now}
	c := New(src, 30*time.Second, clk.Now)
	for range 5 {
		if _, err := c.Token(context.Background(), []string{"api"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d client credentials requests for one 20s token, want 1", n)
	}
	clk.Advance(11 * time.Second) // past half its lifetime: renewed
	if tok, err := c.Token(context.Background(), []string{"api"}); err != nil || tok != "ct-2" {
		t.Fatalf("after half the lifetime: %q, %v; want ct-2", tok, err)
	}
}

package exchange

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/testclock"
)

type fakeSource struct {
	calls atomic.Int32
	fail  atomic.Bool
	delay time.Duration
	ttl   time.Duration
	now   func() time.Time
}

func (f *fakeSource) TokenExchange(_ context.Context, subject string, req oidc.ExchangeRequest) (oidc.Tokens, error) {
	n := f.calls.Add(1)
	time.Sleep(f.delay)
	if f.fail.Load() {
		return oidc.Tokens{}, fmt.Errorf("%w: down", oidc.ErrUnavailable)
	}
	t := oidc.Tokens{AccessToken: fmt.Sprintf("%s>%s|%s|%v#%d", subject, req.Audience, req.Resource, req.Scope, n), TokenType: "Bearer"}
	if f.ttl > 0 {
		t.Expiry = f.now().Add(f.ttl)
	}
	return t, nil
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	clk := testclock.New(time.Unix(1e9, 0))
	src := &fakeSource{ttl: time.Minute, now: clk.Now}
	c := New(Options{Source: src, Skew: 10 * time.Second, Now: clk.Now})
	a := oidc.ExchangeRequest{Audience: "a", Scope: []string{"x", "y"}}
	get := func(sess, sub string, req oidc.ExchangeRequest) string {
		t.Helper()
		tok, err := c.Token(ctx, sess, sub, req)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t1 := get("s1", "at1", a)
	for _, tc := range []struct {
		name      string
		sess, sub string
		req       oidc.ExchangeRequest
		same      bool
	}{
		{"same", "s1", "at1", a, true},
		{"scope order", "s1", "at1", oidc.ExchangeRequest{Audience: "a", Scope: []string{"y", "x"}}, true},
		{"other session", "s2", "at1", a, false},
		{"refreshed subject", "s1", "at2", a, false},
		{"other audience", "s1", "at1", oidc.ExchangeRequest{Audience: "b", Scope: []string{"x", "y"}}, false},
		{"resource", "s1", "at1", oidc.ExchangeRequest{Audience: "a", Resource: "https://a/", Scope: []string{"x", "y"}}, false},
		{"other scope", "s1", "at1", oidc.ExchangeRequest{Audience: "a", Scope: []string{"x"}}, false},
		{"no ambiguity", "s1a", "t1", a, false},
	} {
		if got := get(tc.sess, tc.sub, tc.req); (got == t1) != tc.same {
			t.Errorf("%s: token %q, first %q, want same=%v", tc.name, got, t1, tc.same)
		}
	}
	n := src.calls.Load()
	clk.Advance(55 * time.Second) // within the skew: exchanged again
	if got := get("s1", "at1", a); got == t1 || src.calls.Load() != n+1 {
		t.Errorf("a token due for renewal was reused")
	}
	// The IdP fails while the cached token has not expired: it is used.
	t2 := get("s1", "at1", a)
	clk.Advance(55 * time.Second)
	src.fail.Store(true)
	if got := get("s1", "at1", a); got != t2 {
		t.Errorf("an unexpired token was not used during an outage")
	}
	clk.Advance(10 * time.Second)
	if _, err := c.Token(ctx, "s1", "at1", a); !errors.Is(err, oidc.ErrUnavailable) {
		t.Errorf("expired token during an outage: %v, want ErrUnavailable", err)
	}
}

func TestCacheBounded(t *testing.T) {
	src := &fakeSource{now: time.Now}
	c := New(Options{Source: src, MaxEntries: 3})
	req := oidc.ExchangeRequest{Audience: "a"}
	for i := range 10 {
		if _, err := c.Token(context.Background(), fmt.Sprint("s", i), "at", req); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	n := src.calls.Load()
	c.Token(context.Background(), "s9", "at", req) // most recent: kept
	c.Token(context.Background(), "s0", "at", req) // evicted: exchanged again
	if got := src.calls.Load() - n; got != 1 {
		t.Errorf("%d exchanges, want 1", got)
	}
}

func TestCacheSingleFlight(t *testing.T) {
	src := &fakeSource{delay: 50 * time.Millisecond, now: time.Now}
	c := New(Options{Source: src})
	var wg sync.WaitGroup
	toks := make([]string, 20)
	for i := range toks {
		wg.Go(func() {
			toks[i], _ = c.Token(context.Background(), "s", "at", oidc.ExchangeRequest{Audience: "a"})
		})
	}
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Errorf("%d exchanges for 20 concurrent callers, want 1", n)
	}
	for _, tok := range toks {
		if tok == "" || tok != toks[0] {
			t.Fatalf("tokens %v", toks)
		}
	}
}

// BenchmarkCachedToken is the per-request cost of a cached exchanged token.
func BenchmarkCachedToken(b *testing.B) {
	c := New(Options{Source: &fakeSource{now: time.Now}})
	req := oidc.ExchangeRequest{Audience: "api-a", Scope: []string{"orders:read"}}
	at := "at-0123456789abcdefghijklmnopqrstuvwxyz"
	ctx := context.Background()
	c.Token(ctx, "session-key-0123456789abcdef", at, req)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Token(ctx, "session-key-0123456789abcdef", at, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestShortLivedTokenNotExchangedPerRequest: an exchanged token living less
// than the skew is kept for half its lifetime, as session tokens are
// (session.Tokens.Fresh), rather than exchanged again on every request.
func TestShortLivedTokenNotExchangedPerRequest(t *testing.T) {
	clk := testclock.New(time.Unix(1e9, 0))
	src := &fakeSource{ttl: 20 * time.Second, now: clk.Now}
	c := New(Options{Source: src, Skew: 30 * time.Second, Now: clk.Now})
	req := oidc.ExchangeRequest{Audience: "a"}
	for range 5 {
		if _, err := c.Token(context.Background(), "s", "at", req); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d exchanges for one 20s token, want 1", n)
	}
	clk.Advance(11 * time.Second)
	if _, err := c.Token(context.Background(), "s", "at", req); err != nil {
		t.Fatal(err)
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("after half the lifetime: %d exchanges, want 2", n)
	}
}

package token_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/testclock"
	"github.com/moat-bff/moat/internal/token"
)

// skewed is a replica's wall clock, off by a fixed amount.
type skewed time.Duration

func (s skewed) Now() time.Time { return time.Now().Add(time.Duration(s)) }

// sharedStores are the stores replicas share: memory always, Redis and
// PostgreSQL when MOAT_TEST_REDIS_URL / MOAT_TEST_POSTGRES_URL are set.
func sharedStores(t *testing.T) map[string]func() session.Store {
	ctx := context.Background()
	open := func(spec string) func() session.Store {
		return func() session.Store {
			s, err := backend.Open(ctx, spec, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}
	out := map[string]func() session.Store{"memory": func() session.Store { return memory.New(memory.Options{}) }}
	for name, u := range storetest.SharedURLs(t, "skew") {
		out[name] = open(u)
	}
	return out
}

// skewReplica is a replica whose clock is off by skew, on store.
func skewReplica(store session.Store, p *idp, skew time.Duration, lease time.Duration) (*token.Manager, *session.Manager) {
	sm := session.NewManager(session.ManagerOptions{Store: store, Codec: testCodec, Now: skewed(skew).Now,
		IdleTimeout: 3 * time.Hour, AbsoluteTimeout: 8 * time.Hour, Logger: slog.New(slog.DiscardHandler),
		CacheTTL: time.Millisecond, CacheSize: 10})
	return token.NewManager(token.Options{Sessions: sm, Refresher: p, Skew: 30 * time.Second,
		LeaseTTL: lease, PollInterval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}), sm
}

// newSkewSession stores a session whose access token expired two hours
// ago by any of the replicas' clocks, and returns its key.
func newSkewSession(t *testing.T, sm *session.Manager, lease session.Lease) session.Key {
	now := time.Now()
	l, err := sm.Create(context.Background(), httptest.NewRecorder(), session.Session{Subject: "alice",
		Tokens: session.Tokens{AccessToken: "at-0", RefreshToken: "rt-0", Expiry: now.Add(-2 * time.Hour), Obtained: now.Add(-3 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Holder != "" {
		l.Lease = lease
		if err := sm.Save(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	return l.Key
}

// TestLeaseIgnoresClockSkew: a lease written with one replica's clock is
// judged by how long another has watched it, not by the time written in it.
// A replica whose clock is an hour behind takes the lease; one with the
// right time must still wait for it (and not present the same refresh
// token, which the IdP's reuse detection would punish by revoking the
// grant). A lease left by a dead replica whose clock was an hour ahead is
// taken over after the lease TTL, not after an hour.
func TestLeaseIgnoresClockSkew(t *testing.T) {
	for name, open := range sharedStores(t) {
		t.Run(name+"/holder behind", func(t *testing.T) {
			store := open()
			p := &idp{clock: testclock.New(time.Now())}
			behind, behindSM := skewReplica(store, p, -time.Hour, 5*time.Second)
			right, rightSM := skewReplica(store, p, 0, 5*time.Second)
			key := newSkewSession(t, rightSM, session.Lease{})
			var other atomic.Value
			p.during = func() {
				// While the replica that is behind refreshes, the other is asked.
				p.mu.Lock()
				p.during = nil
				p.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				l, err := rightSM.LoadKey(ctx, key)
				if err != nil {
					other.Store(err)
					return
				}
				_, err = right.AccessToken(ctx, l)
				other.Store(errors.Join(err, errors.New("(expected the caller's deadline)")))
			}
			l, err := behindSM.LoadKey(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if at, err := behind.AccessToken(context.Background(), l); err != nil || at != "at-1" {
				t.Fatalf("the holder: %q, %v", at, err)
			}
			if got := p.presented(); !slices.Equal(got, []string{"rt-0"}) {
				t.Errorf("refresh tokens presented: %q, want rt-0 once (the replica with the right time took over the lease)", got)
			}
			if err, _ := other.Load().(error); err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the other replica during the refresh: %v", err)
			}
			l, err = rightSM.LoadKey(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if at, err := right.AccessToken(context.Background(), l); err != nil || at != "at-1" {
				t.Errorf("the other replica after the refresh: %q, %v", at, err)
			}
		})
		t.Run(name+"/dead holder ahead", func(t *testing.T) {
			store := open()
			p := &idp{clock: testclock.New(time.Now())}
			right, rightSM := skewReplica(store, p, 0, 300*time.Millisecond)
			// What a replica an hour ahead writes, before it died.
			key := newSkewSession(t, rightSM, session.Lease{Holder: "ahead", Until: time.Now().Add(time.Hour + 300*time.Millisecond)})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			l, err := rightSM.LoadKey(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if at, err := right.AccessToken(ctx, l); err != nil || at != "at-1" {
				t.Fatalf("after the dead holder's lease: %q, %v", at, err)
			}
			if d := time.Since(start); d < 300*time.Millisecond {
				t.Errorf("took over after %v, before the lease TTL", d)
			}
		})
	}
}

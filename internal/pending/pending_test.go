package pending

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/session/storetest"
)

type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// stores returns the four stores, Redis and PostgreSQL when their
// MOAT_TEST_* variable is set, each under a name of its own.
func stores(t *testing.T) map[string]session.Store {
	ctx := context.Background()
	out := map[string]session.Store{"memory": memory.New(memory.Options{})}
	open := func(name, spec string) {
		s, err := backend.Open(ctx, spec, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { s.Close() })
		out[name] = s
	}
	open("bolt", "bolt://"+filepath.Join(t.TempDir(), "s.db"))
	for name, u := range storetest.SharedURLs(t, "pending") {
		open(name, u)
	}
	return out
}

func key(i int) session.Key {
	return session.KeyOf("login", []byte{byte(i), byte(i >> 8), byte(i >> 16)})
}

func TestPerReplicaCap(t *testing.T) {
	clk := &clock{}
	c := New(Options{PerReplica: 5, PerStore: 1 << 30, Timeout: 10 * time.Minute, Store: memory.New(memory.Options{}), Now: clk.Now})
	ctx := context.Background()
	for i := range 5 {
		if err := c.Admit(ctx, key(i)); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	var full *Full
	if err := c.Admit(ctx, key(5)); !errors.As(err, &full) || full.Scope != "replica" {
		t.Fatalf("6th login: %v, want the replica cap", err)
	}
	c.Done(key(0)) // completed here: room for one more
	if err := c.Admit(ctx, key(6)); err != nil {
		t.Fatalf("after a completion: %v", err)
	}
	if n := c.Pending(); n != 5 {
		t.Errorf("Pending = %d, want 5", n)
	}
	clk.Advance(10 * time.Minute) // all expire
	if n := c.Pending(); n != 0 {
		t.Errorf("Pending after the timeout = %d, want 0", n)
	}
	// Completed logins do not pile up in the bookkeeping.
	for i := range 10_000 {
		if err := c.Admit(ctx, key(100+i)); err != nil {
			t.Fatal(err)
		}
		c.Done(key(100 + i))
	}
	c.mu.Lock()
	n := len(c.order)
	c.mu.Unlock()
	if n > 200 {
		t.Errorf("10 000 completed logins left %d entries behind", n)
	}
}

// TestPerStoreCap: two replicas sharing a store admit PerStore logins in
// all; the window moves on with the clock.
func TestPerStoreCap(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			clk := &clock{}
			clk.Advance(time.Duration(len(name)) * time.Hour) // buckets of their own
			o := Options{PerReplica: 1000, PerStore: 30, Timeout: 10 * time.Minute, Store: store, Now: clk.Now}
			a, b := New(o), New(o)
			ctx := context.Background()
			var ok atomic.Int64
			var wg sync.WaitGroup
			for r, c := range []*Cap{a, b} {
				wg.Go(func() {
					for i := range 40 {
						err := c.Admit(ctx, key(r*1000+i))
						var full *Full
						switch {
						case err == nil:
							ok.Add(1)
						case errors.As(err, &full) && full.Scope == "store":
						default:
							t.Errorf("replica %d login %d: %v", r, i, err)
						}
					}
				})
			}
			wg.Wait()
			if n := ok.Load(); n != 30 {
				t.Errorf("two replicas admitted %d logins, want the store cap of 30", n)
			}
			clk.Advance(5 * time.Minute) // half the window: still full
			if err := a.Admit(ctx, key(5000)); err == nil {
				t.Error("admitted with 30 logins of the last 5 minutes in the store")
			}
			clk.Advance(6*time.Minute + time.Second) // past the window
			if err := b.Admit(ctx, key(5001)); err != nil {
				t.Errorf("after the window: %v", err)
			}
		})
	}
}

// gatedStore holds every Get until release is closed, counting those
// waiting at once.
type gatedStore struct {
	session.Store
	release chan struct{}
	waiting atomic.Int64
	most    atomic.Int64
}

func (g *gatedStore) Get(ctx context.Context, k session.Key) (session.Record, error) {
	n := g.waiting.Add(1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	defer g.waiting.Add(-1)
	select {
	case <-g.release:
	case <-ctx.Done():
		return session.Record{}, ctx.Err()
	}
	return g.Store.Get(ctx, k)
}

// TestClosedBucketsReadTogether: the ten closed buckets are read at once,
// not one round trip after another, and without a lock held across the
// reads: a second login waiting for them gives up with its own context.
func TestClosedBucketsReadTogether(t *testing.T) {
	g := &gatedStore{Store: memory.New(memory.Options{}), release: make(chan struct{})}
	c := New(Options{PerReplica: 100, PerStore: 100, Timeout: 10 * time.Minute, Store: g})
	first := make(chan error, 1)
	go func() { first <- c.Admit(context.Background(), key(1)) }()

	deadline := time.Now().Add(5 * time.Second)
	for g.most.Load() < buckets && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := g.most.Load(); n < buckets {
		close(g.release)
		<-first
		t.Fatalf("at most %d bucket reads were in flight at once, want all %d", n, buckets)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Admit(ctx, key(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second login while the buckets are read = %v, want its own deadline", err)
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatalf("first login: %v", err)
	}
	if err := c.Admit(context.Background(), key(3)); err != nil {
		t.Fatalf("a login after the reread: %v", err)
	}
}

// BenchmarkAdmit is what the caps add to /auth/login on the memory store:
// the replica's bookkeeping, one Get and one CompareAndSwap of the current
// bucket (the closed buckets are reread once a second).
func BenchmarkAdmit(b *testing.B) {
	c := New(Options{PerReplica: 1 << 30, PerStore: 1 << 30, Timeout: 10 * time.Minute, Store: memory.New(memory.Options{})})
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		k := key(i)
		i++
		if err := c.Admit(ctx, k); err != nil {
			b.Fatal(err)
		}
		c.Done(k)
	}
}

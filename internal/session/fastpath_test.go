package session_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

// bus is one store shared by replicas, with an invalidation channel as
// lazy as the protocol allows: a write is queued for every replica when it
// completes (as Redis queues a push before its reply, PostgreSQL a
// notification at commit), and a replica hears of it only through a round
// trip that reaches the store after it.
type bus struct {
	session.Store
	mu   sync.Mutex
	subs []*lazyInv
	gets atomic.Int64
}

func (b *bus) Get(ctx context.Context, key session.Key) (session.Record, error) {
	b.gets.Add(1)
	return b.Store.Get(ctx, key)
}

func (b *bus) publish(keys ...session.Key) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		s.mu.Lock()
		s.queued = append(s.queued, keys...)
		s.mu.Unlock()
	}
}

func (b *bus) Set(ctx context.Context, key session.Key, r session.Record, ttl time.Duration) (uint64, error) {
	v, err := b.Store.Set(ctx, key, r, ttl)
	b.publish(key)
	return v, err
}

func (b *bus) CompareAndSwap(ctx context.Context, key session.Key, old uint64, r session.Record, ttl time.Duration) (uint64, error) {
	v, err := b.Store.CompareAndSwap(ctx, key, old, r, ttl)
	b.publish(key)
	return v, err
}

func (b *bus) Delete(ctx context.Context, key session.Key) error {
	err := b.Store.Delete(ctx, key)
	b.publish(key)
	return err
}

func (b *bus) DeleteBy(ctx context.Context, sub, sid string) ([]session.Key, error) {
	keys, err := b.Store.DeleteBy(ctx, sub, sid)
	b.publish(keys...)
	return keys, err
}

// lazyInv is one replica's end of a bus: a round trip (trip) delivers
// what was queued when it reached the store, after a delay.
type lazyInv struct {
	mu     sync.Mutex
	queued []session.Key
	drop   func(session.Key)
	sync   session.Coalesce
	delay  time.Duration
	trips  atomic.Int64
	down   atomic.Bool
}

func (l *lazyInv) Watch(_ context.Context, drop func(session.Key), _ func()) { l.drop = drop }

func (l *lazyInv) Sync(ctx context.Context, since time.Time) error {
	return l.sync.Do(ctx, since, func(context.Context) error {
		l.trips.Add(1)
		if l.down.Load() {
			return errors.New("invalidation channel down")
		}
		l.mu.Lock()
		keys := l.queued // what the store had queued when the round trip reached it
		l.queued = nil
		l.mu.Unlock()
		time.Sleep(l.delay)
		for _, k := range keys {
			l.drop(k)
		}
		return nil
	})
}

func (l *lazyInv) Synced() time.Time { return l.sync.Synced() }

// replicas returns n managers on one bus, each caching for a minute, with
// the given sync window, whose round trips take a millisecond.
func replicas(t *testing.T, n int, window time.Duration) (*bus, []*session.Manager, []*lazyInv) {
	return slowReplicas(t, n, window, time.Millisecond)
}

// slowReplicas is replicas with round trips that take delay.
func slowReplicas(t *testing.T, n int, window, delay time.Duration) (*bus, []*session.Manager, []*lazyInv) {
	mem := memory.New(memory.Options{})
	t.Cleanup(func() { mem.Close() })
	b := &bus{Store: mem}
	c := codec(t, session.NewKey())
	var ms []*session.Manager
	var invs []*lazyInv
	for range n {
		inv := &lazyInv{delay: delay}
		b.subs = append(b.subs, inv)
		ms = append(ms, session.NewManager(session.ManagerOptions{Store: b, Codec: c,
			IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour, Logger: slog.New(slog.DiscardHandler),
			CacheTTL: time.Minute, CacheSize: 100, WatchContext: t.Context(), Invalidator: inv, SyncWindow: window}))
		invs = append(invs, inv)
	}
	return b, ms, invs
}

// TestCachedHitNeedsNoRoundTrip: while sessions are served from the cache,
// the heartbeat keeps a recent round trip, so a cached hit makes none of
// its own; without a recent one (the channel is down) it makes one, and
// if that fails the store is read.
func TestCachedHitNeedsNoRoundTrip(t *testing.T) {
	const window = 50 * time.Millisecond
	b, ms, invs := replicas(t, 1, window)
	m, inv := ms[0], invs[0]
	ctx := t.Context()
	l, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	loads := 0
	for time.Since(start) < 4*window {
		if _, err := m.LoadKey(ctx, l.Key); err != nil {
			t.Fatal(err)
		}
		loads++
	}
	// The heartbeat runs a round trip every window/5: about 20 here.
	if n := inv.trips.Load(); n > 40 || n >= int64(loads)/10 {
		t.Fatalf("%d round trips for %d cached loads in %v: the cache is not served without one", n, loads, 4*window)
	}
	// The loads stop; within a second of the last, the heartbeat still
	// keeps a round trip recent, so that the next load waits for none.
	time.Sleep(3 * window)
	if age := time.Since(inv.Synced()); age >= 2*window {
		t.Fatalf("%v after the last load, the latest round trip is %v old: no heartbeat", 3*window, age)
	}

	// The channel goes down: once the last round trip that succeeded is a
	// window old, the cache is bypassed.
	inv.down.Store(true)
	time.Sleep(window + window/2)
	before := b.gets.Load()
	if _, err := m.LoadKey(ctx, l.Key); err != nil {
		t.Fatal(err)
	}
	if b.gets.Load() == before {
		t.Fatal("with no round trip within the window, the cache served the session")
	}
}

// TestWritesAreFenced: an ending or a change returns only after the sync
// window (and a margin), so that no replica can still serve a copy cached
// before it without a round trip sent after it; sliding the idle deadline
// does not wait, and neither does a manager without an invalidator.
func TestWritesAreFenced(t *testing.T) {
	const window = 300 * time.Millisecond
	_, ms, _ := replicas(t, 1, window)
	m := ms[0]
	ctx := t.Context()
	writes := map[string]func(l *session.Loaded) error{
		"logout":          func(l *session.Loaded) error { return m.Delete(ctx, nil, l.Key) },
		"revoke by sid":   func(l *session.Loaded) error { _, err := m.DeleteBy(ctx, "", l.SID); return err },
		"revoke all":      func(l *session.Loaded) error { _, err := m.DeleteBy(ctx, l.Subject, ""); return err },
		"change (a save)": func(l *session.Loaded) error { l.UserAgent = "changed"; return m.Save(ctx, l) },
	}
	for name, write := range writes {
		l, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "s-" + name, SID: "sid-" + name})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := write(l); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < window+window/10 {
			t.Errorf("%s returned after %v, before the sync window of %v", name, took, window)
		}
	}
	l, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m.TouchAt(ctx, l, l.LastSeen.Add(time.Hour/10))
	if took := time.Since(start); took >= window {
		t.Errorf("sliding the idle deadline took %v: it waited for the sync window", took)
	}
	plain := cachedManager(t, memory.New(memory.Options{}))
	l, err = plain.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := plain.Delete(ctx, nil, l.Key); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= window {
		t.Errorf("a logout without an invalidator took %v", took)
	}
}

// TestNoReplicaServesAWriteItMissed is issue 14's guarantee on the fast
// path: with three replicas on a lazy channel, while two of them serve a
// session from their caches as fast as they can, an ending or a change on
// the third is seen by every load on the others that starts after it
// returned: never the ended session, never the old version. Removing the
// fence from Delete, DeleteBy or Save makes it fail. With round trips
// slower than the window (a loaded replica), the heartbeat cannot keep one
// recent and loads wait for one: joining one that started before the
// window makes it fail too.
func TestNoReplicaServesAWriteItMissed(t *testing.T) {
	const window = 20 * time.Millisecond
	for _, delay := range []time.Duration{time.Millisecond, 5 * window} {
		t.Run(fmt.Sprintf("round trip %v", delay), func(t *testing.T) {
			_, ms, _ := slowReplicas(t, 3, window, delay)
			// Slow round trips: loads start at random points of a round,
			// not just as one ends.
			noReplicaServesAWriteItMissed(t, ms, window, delay)
		})
	}
}

func noReplicaServesAWriteItMissed(t *testing.T, ms []*session.Manager, window, delay time.Duration) {
	ctx := t.Context()
	ends := map[string]func(m *session.Manager, l *session.Loaded) error{
		"logout":        func(m *session.Manager, l *session.Loaded) error { return m.Delete(ctx, nil, l.Key) },
		"revoke by sid": func(m *session.Manager, l *session.Loaded) error { _, err := m.DeleteBy(ctx, "", l.SID); return err },
		"revoke all": func(m *session.Manager, l *session.Loaded) error {
			_, err := m.DeleteBy(ctx, l.Subject, "")
			return err
		},
		"change": func(m *session.Manager, l *session.Loaded) error {
			l.UserAgent = "changed"
			return m.Save(ctx, l)
		},
	}
	for round := range 5 {
		for name, end := range ends {
			l, err := ms[0].Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice", SID: "sid-1"})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if _, err := m.LoadKey(ctx, l.Key); err != nil {
					t.Fatal(err)
				}
			}
			// after holds the version the others must see from the end's
			// return on; 0 means none.
			var ended atomic.Bool
			var after atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := 1; i < 3; i++ {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						was := ended.Load()
						want := after.Load()
						got, err := ms[i].LoadKey(ctx, l.Key)
						if delay > window {
							time.Sleep(rand.N(delay))
						}
						if !was {
							continue
						}
						switch {
						case want == 0 && err == nil:
							t.Errorf("round %d: %s on replica 0; a load starting after it returned on replica %d served the session", round, name, i)
							return
						case want != 0 && (err != nil || got.Version < want):
							t.Errorf("round %d: %s on replica 0 (version %d); a load starting after it returned on replica %d = %v, %v", round, name, want, i, got, err)
							return
						}
					}
				})
			}
			time.Sleep(3*window + 3*delay) // the others serve from their caches
			c := *l
			if err := end(ms[0], &c); err != nil {
				t.Fatal(err)
			}
			if name == "change" {
				after.Store(c.Version)
			}
			ended.Store(true)
			time.Sleep(2*window + 3*delay) // loads that started after it have ended
			close(stop)
			wg.Wait()
			if t.Failed() {
				return
			}
		}
	}
}

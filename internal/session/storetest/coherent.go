package storetest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// Relay is what RunCoherentCache needs of a tcprelay in front of one
// replica's store.
type Relay interface {
	Cut()
	Refuse()
	Accept()
	Mute()
	Unmute()
}

// counting counts a store's reads, to tell cache hits from store reads, and
// passes Watch and Sync through.
type counting struct {
	session.Store
	inv  session.Invalidator
	gets atomic.Int64
}

func (c *counting) Get(ctx context.Context, key session.Key) (session.Record, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *counting) Watch(ctx context.Context, drop func(session.Key), flush func()) {
	c.inv.Watch(ctx, drop, flush)
}

func (c *counting) Sync(ctx context.Context, since time.Time) error {
	return c.inv.Sync(ctx, since)
}

func (c *counting) Synced() time.Time { return c.inv.Synced() }

// RunCoherentCache checks the coherent session cache of issue 14 with
// three replicas, each a session.Manager with its own store client on the
// same database and a cache that would keep sessions for a minute: a
// logout, a back-channel logout, an admin revocation of one session or of
// all of a user's, or a change, made through one replica is seen by every
// other replica on the very next request, with no pause in between; and
// the cache still serves (a second request costs no store read). open
// returns a store for one replica; relayed, if not nil, returns one whose
// connections a Relay controls. Both must implement session.Invalidator.
func RunCoherentCache(t *testing.T, open func(t *testing.T) session.Store, relayed func(t *testing.T) (session.Store, Relay)) {
	t.Helper()
	key := session.NewKey()
	raw, err := session.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := session.NewCodec(raw)
	if err != nil {
		t.Fatal(err)
	}
	manager := func(t *testing.T, s session.Store, window ...time.Duration) (*session.Manager, *counting) {
		inv, ok := s.(session.Invalidator)
		if !ok {
			t.Fatalf("%T is not a session.Invalidator", s)
		}
		c := &counting{Store: s, inv: inv}
		m := session.NewManager(session.ManagerOptions{Store: c, Codec: codec, IdleTimeout: time.Hour,
			AbsoluteTimeout: 2 * time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			CacheTTL: time.Minute, CacheSize: 1000, WatchContext: t.Context(), SyncWindow: append(window, 0)[0]})
		// Until the invalidation channel is up the cache is bypassed.
		deadline := time.Now().Add(10 * time.Second)
		for inv.Sync(t.Context(), time.Now()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("the invalidation channel did not come up within 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return m, c
	}
	ctx := t.Context()
	create := func(t *testing.T, m *session.Manager, sub string) *session.Loaded {
		t.Helper()
		l, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: sub, SID: random("sid")})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// warm makes m cache l and checks that the next load is a hit. The
	// creation's own invalidation may still be on its way and drop the
	// first copy: Sync waits for it.
	warm := func(t *testing.T, m *session.Manager, c *counting, l *session.Loaded) {
		t.Helper()
		if err := c.Sync(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := m.LoadKey(ctx, l.Key); err != nil {
			t.Fatal(err)
		}
		before := c.gets.Load()
		if _, err := m.LoadKey(ctx, l.Key); err != nil {
			t.Fatal(err)
		}
		if c.gets.Load() != before {
			t.Fatal("a second load read the store: the cache serves nothing")
		}
	}

	t.Run("EndingIsSeenEverywhereAtOnce", func(t *testing.T) {
		var ms [3]*session.Manager
		var cs [3]*counting
		for i := range ms {
			ms[i], cs[i] = manager(t, open(t))
		}
		ends := []struct {
			name string
			end  func(m *session.Manager, l *session.Loaded) error
		}{
			{"logout", func(m *session.Manager, l *session.Loaded) error { return m.Delete(ctx, nil, l.Key) }},
			{"back-channel logout", func(m *session.Manager, l *session.Loaded) error {
				_, err := m.DeleteBy(ctx, "", l.SID)
				return err
			}},
			{"admin revoke-one", func(m *session.Manager, l *session.Loaded) error {
				_, err := m.DeleteBy(ctx, l.Subject, l.SID)
				return err
			}},
			{"admin revoke-all", func(m *session.Manager, l *session.Loaded) error {
				_, err := m.DeleteBy(ctx, l.Subject, "")
				return err
			}},
		}
		for round := range 5 {
			for _, e := range ends {
				for by := range ms {
					l := create(t, ms[by], random("sub"))
					for i := range ms {
						warm(t, ms[i], cs[i], l)
					}
					if err := e.end(ms[by], l); err != nil {
						t.Fatal(err)
					}
					for i := range ms {
						if got, err := ms[i].LoadKey(ctx, l.Key); !errors.Is(err, session.ErrNoSession) {
							t.Fatalf("round %d: %s on replica %d, the next load on replica %d = %v, %v; want ErrNoSession",
								round, e.name, by, i, got, err)
						}
					}
				}
			}
		}
		// A change (a token refresh) is seen everywhere at once too.
		l := create(t, ms[0], random("sub"))
		for i := range ms {
			warm(t, ms[i], cs[i], l)
		}
		l.UserAgent = "changed on replica 0"
		if err := ms[0].Save(ctx, l); err != nil {
			t.Fatal(err)
		}
		for i := range ms {
			got, err := ms[i].LoadKey(ctx, l.Key)
			if err != nil || got.Version != l.Version {
				t.Fatalf("after a change on replica 0, replica %d loads version %v, %v; want %d", i, got, err, l.Version)
			}
		}
	})

	// A partition that sends no reset: b hears nothing more, though its
	// latest round trip was recent when it went silent. A logout through a
	// must still not be served by b once it has returned. The window is
	// long, so that without the fence b's last round trip would still be
	// within it on a loaded machine.
	t.Run("InvalidationsSilenced", func(t *testing.T) {
		if relayed == nil {
			t.Skip("no relay for this deployment")
		}
		const window = time.Second
		a, _ := manager(t, open(t), window)
		bs, relay := relayed(t)
		b, bc := manager(t, bs, window)
		inv := bs.(session.Invalidator)
		for round := range 2 {
			l := create(t, a, random("sub"))
			warm(t, b, bc, l)
			relay.Mute()
			if err := a.Delete(ctx, nil, l.Key); err != nil {
				t.Fatal(err)
			}
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			got, err := b.LoadKey(lctx, l.Key)
			cancel()
			if err == nil {
				t.Fatalf("round %d: the silenced replica served a session deleted meanwhile: %v", round, got.Key.Short())
			}
			relay.Unmute()
			relay.Cut() // replies were lost: every connection starts over
			deadline := time.Now().Add(10 * time.Second)
			for inv.Sync(ctx, time.Now()) != nil {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the invalidation channel did not come back within 10s", round)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	t.Run("InvalidationConnectionCut", func(t *testing.T) {
		if relayed == nil {
			t.Skip("no relay for this deployment")
		}
		a, _ := manager(t, open(t))
		bs, relay := relayed(t)
		b, bc := manager(t, bs)
		inv := bs.(session.Invalidator)
		for round := range 4 {
			l := create(t, a, random("sub"))
			warm(t, b, bc, l)
			relay.Cut()
			if round%2 == 1 {
				relay.Refuse() // and it stays down for a while
			}
			if err := a.Delete(ctx, nil, l.Key); err != nil {
				t.Fatal(err)
			}
			if got, err := b.LoadKey(ctx, l.Key); err == nil {
				t.Fatalf("round %d: the replica whose connections were cut served a session deleted meanwhile: %v", round, got.Key.Short())
			}
			relay.Accept()
			// It recovers by itself: the cache serves again.
			deadline := time.Now().Add(10 * time.Second)
			for inv.Sync(ctx, time.Now()) != nil {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the invalidation channel did not come back within 10s", round)
				}
				time.Sleep(10 * time.Millisecond)
			}
			l2 := create(t, a, random("sub"))
			warm(t, b, bc, l2)
			if err := a.Delete(ctx, nil, l2.Key); err != nil {
				t.Fatal(err)
			}
			if _, err := b.LoadKey(ctx, l2.Key); !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("round %d: after recovery a logout elsewhere is not seen at once: %v", round, err)
			}
		}
	})
}

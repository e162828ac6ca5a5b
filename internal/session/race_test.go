package session_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

// slowStore holds each Get after it has read the record, until released:
// the read then answers with what the store held before whatever happened
// meanwhile, as a slow network read does.
type slowStore struct {
	session.Store
	read    chan struct{} // a Get has read its record
	release chan struct{}
}

func (s *slowStore) Get(ctx context.Context, key session.Key) (session.Record, error) {
	r, err := s.Store.Get(ctx, key)
	select {
	case s.read <- struct{}{}: // the first Get only
		<-s.release
	default:
	}
	return r, err
}

// TestReadInFlightDoesNotReviveLogout: a store read in flight on this
// replica must not put back into the cache a session that a logout (or a
// back-channel logout, or an admin revocation) deleted while it was in
// flight (issue 14: the same-replica race).
func TestReadInFlightDoesNotReviveLogout(t *testing.T) {
	end := map[string]func(ctx context.Context, m *session.Manager, l *session.Loaded) error{
		"logout": func(ctx context.Context, m *session.Manager, l *session.Loaded) error {
			return m.Delete(ctx, nil, l.Key)
		},
		"back-channel logout by sid": func(ctx context.Context, m *session.Manager, l *session.Loaded) error {
			_, err := m.DeleteBy(ctx, "", l.SID)
			return err
		},
		"admin revoke-all by subject": func(ctx context.Context, m *session.Manager, l *session.Loaded) error {
			_, err := m.DeleteBy(ctx, l.Subject, "")
			return err
		},
	}
	for name, endSession := range end {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			mem := memory.New(memory.Options{})
			defer mem.Close()
			slow := &slowStore{Store: mem, read: make(chan struct{}, 1), release: make(chan struct{})}
			m := cachedManager(t, slow)
			l, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice", SID: "sid-1"})
			if err != nil {
				t.Fatal(err)
			}
			// Fresh bypasses the cache: a read that is in flight.
			done := make(chan error, 1)
			go func() {
				_, err := m.Fresh(ctx, l.Key)
				done <- err
			}()
			<-slow.read // it has read the live session
			if err := endSession(ctx, m, l); err != nil {
				t.Fatal(err)
			}
			close(slow.release)
			if err := <-done; err != nil {
				t.Fatalf("the read in flight: %v", err)
			}
			if got, err := m.LoadKey(ctx, l.Key); err != session.ErrNoSession {
				t.Fatalf("after the %s, with a read in flight during it: LoadKey = %v, %v; want ErrNoSession", name, got, err)
			}
		})
	}
}

// TestSaveInFlightDoesNotReviveLogout: a session write whose swap won just
// before a logout deleted the session must not put it back into the cache.
func TestSaveInFlightDoesNotReviveLogout(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	hold := &slowCAS{Store: mem, swapped: make(chan struct{}, 1), release: make(chan struct{})}
	m := cachedManager(t, hold)
	l, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice", SID: "sid-1"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c := *l
		c.UserAgent = "refreshed"
		done <- m.Save(ctx, &c)
	}()
	<-hold.swapped
	if err := m.Delete(ctx, nil, l.Key); err != nil {
		t.Fatal(err)
	}
	close(hold.release)
	if err := <-done; err != nil {
		t.Fatalf("the save in flight: %v", err)
	}
	if got, err := m.LoadKey(ctx, l.Key); err != session.ErrNoSession {
		t.Fatalf("after a logout during a save: LoadKey = %v, %v; want ErrNoSession", got, err)
	}
}

// cachedManager is a Manager on store whose cache would keep a session for
// a minute.
func cachedManager(t *testing.T, store session.Store) *session.Manager {
	return session.NewManager(session.ManagerOptions{Store: store, Codec: codec(t, session.NewKey()),
		IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour,
		Logger: slog.New(slog.DiscardHandler), CacheTTL: time.Minute, CacheSize: 100})
}

// slowCAS holds each CompareAndSwap after it has written, until released.
type slowCAS struct {
	session.Store
	swapped chan struct{}
	release chan struct{}
}

func (s *slowCAS) CompareAndSwap(ctx context.Context, key session.Key, old uint64, r session.Record, ttl time.Duration) (uint64, error) {
	v, err := s.Store.CompareAndSwap(ctx, key, old, r, ttl)
	select {
	case s.swapped <- struct{}{}: // the first swap only
		<-s.release
	default:
	}
	return v, err
}

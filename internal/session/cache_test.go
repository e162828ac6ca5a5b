package session_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/testclock"
)

func TestManagerCache(t *testing.T) {
	ctx := context.Background()
	clock := testclock.New(time.Now())
	store := memory.New(memory.Options{Now: clock.Now})
	defer store.Close()
	c := codec(t, session.NewKey())
	opts := session.ManagerOptions{Store: store, Codec: c, IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour,
		Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CacheTTL: 500 * time.Millisecond, CacheSize: 100}
	here := session.NewManager(opts)
	there := session.NewManager(opts) // another replica on the same store

	l, err := here.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice", SID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	// Another replica logs the user out: seen here within the TTL, not before.
	if err := there.Delete(ctx, nil, l.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := here.LoadKey(ctx, l.Key); err != nil {
		t.Fatalf("within the TTL the cached session is served: %v", err)
	}
	clock.Advance(500 * time.Millisecond)
	if _, err := here.LoadKey(ctx, l.Key); err != session.ErrNoSession {
		t.Fatalf("after the TTL a logout elsewhere must show: %v", err)
	}

	// A conflicting write drops the stale copy at once.
	l, _ = here.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice", SID: "s2"})
	other, _ := there.LoadKey(ctx, l.Key)
	other.UserAgent = "changed elsewhere"
	if err := there.Save(ctx, other); err != nil {
		t.Fatal(err)
	}
	stale, _ := here.LoadKey(ctx, l.Key)
	stale.UserAgent = "mine"
	if err := here.Save(ctx, stale); err != session.ErrConflict {
		t.Fatalf("save over a newer version: %v", err)
	}
	if fresh, _ := here.LoadKey(ctx, l.Key); fresh.UserAgent != "changed elsewhere" {
		t.Errorf("after a conflict the store's version is read: %q", fresh.UserAgent)
	}
	// Fresh always reads the store.
	other, _ = there.Fresh(ctx, l.Key)
	other.UserAgent = "again"
	there.Save(ctx, other)
	if f, _ := here.Fresh(ctx, l.Key); f.UserAgent != "again" {
		t.Errorf("Fresh returned a cached copy: %q", f.UserAgent)
	}
	// DeleteBy here drops cached copies here.
	if n, err := storetest.Count(here.DeleteBy(ctx, "alice", "")); err != nil || n != 1 {
		t.Fatalf("DeleteBy = %d, %v", n, err)
	}
	if _, err := here.LoadKey(ctx, l.Key); err != session.ErrNoSession {
		t.Errorf("DeleteBy left a cached session: %v", err)
	}
	// Mutating a returned copy does not change the cache.
	l, _ = here.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "bob"})
	got, _ := here.LoadKey(ctx, l.Key)
	got.Subject = "mallory"
	if again, _ := here.LoadKey(ctx, l.Key); again.Subject != "bob" {
		t.Error("the cache handed out a shared copy")
	}
}

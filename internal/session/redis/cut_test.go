package redisstore

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/tcprelay"
)

// relayedStore opens a Store on the test Redis under prefix through a
// tcprelay, so the test can cut its connections. It deletes the prefix's
// keys at the end.
func relayedStore(t *testing.T, prefix string) (*Store, *tcprelay.Relay) {
	t.Helper()
	relayed, r := tcprelay.Via(t, redisURL(t))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, withParams(relayed, "prefix="+prefix+"&timeout=5s"), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() {
		_ = s.Ping(context.Background()) // past the last cut
		deletePrefix(t, s)
	})
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// TestConnectionCut cuts every connection to Redis right before each
// operation a user's requests make (session read and write, login
// transaction save and take, logout, back-channel logout, admin list) and
// checks that the operation still succeeds: a dropped connection costs no
// user request.
func TestConnectionCut(t *testing.T) {
	s, relay := relayedStore(t, testPrefix())
	storetest.RunConnectionCut(t, s, relay.Cut)
}

// TestLostReply: a command Redis ran whose reply was lost with the
// connection.
func TestLostReply(t *testing.T) {
	s, relay := relayedStore(t, testPrefix())
	storetest.RunLostReply(t, s, relay)
}

// TestCoherentCache: issue 14 on a real Redis.
func TestCoherentCache(t *testing.T) {
	prefix := testPrefix()
	open := func(t *testing.T) session.Store {
		s, err := Open(t.Context(), withParams(redisURL(t), "prefix="+prefix), Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	relayed := func(t *testing.T) (session.Store, storetest.Relay) {
		return relayedStore(t, prefix)
	}
	t.Cleanup(func() {
		s, err := Open(context.Background(), withParams(redisURL(t), "prefix="+prefix), Options{Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			deletePrefix(t, s)
			s.Close()
		}
	})
	storetest.RunCoherentCache(t, open, relayed)
}

// testPrefix is a key prefix of the test's own on the shared Redis.
func testPrefix() string { return "moattest:" + rand.Text() + ":" }

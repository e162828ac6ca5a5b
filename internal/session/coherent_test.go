package session_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// TestCoalesce: a caller is answered only by a round trip that started
// after its since (one already on the wire may have been sent before the
// logout it must see), and concurrent callers share round trips.
func TestCoalesce(t *testing.T) {
	var c session.Coalesce
	var started atomic.Int64
	release := make(chan struct{})
	inTrip := make(chan int64, 10)
	trip := func(context.Context) error {
		n := started.Add(1)
		inTrip <- n
		<-release
		return nil
	}
	ctx := context.Background()

	// A starts round 1.
	aDone := make(chan struct{})
	go func() { c.Do(ctx, time.Now(), trip); close(aDone) }()
	if n := <-inTrip; n != 1 {
		t.Fatalf("first round = %d", n)
	}
	// B and C call while round 1 is on the wire.
	var wg sync.WaitGroup
	var bRound atomic.Int64
	for range 2 {
		wg.Go(func() {
			c.Do(ctx, time.Now(), trip)
			bRound.Store(started.Load())
		})
	}
	time.Sleep(50 * time.Millisecond) // B and C have joined
	release <- struct{}{}             // round 1 ends
	<-aDone
	select {
	case n := <-inTrip: // round 2 starts for B and C
		if n != 2 {
			t.Fatalf("second round = %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no round trip started for the callers that joined during round 1")
	}
	release <- struct{}{}
	wg.Wait()
	if got := bRound.Load(); got != 2 {
		t.Fatalf("callers that joined during round 1 were answered after round %d, want 2", got)
	}
	if n := started.Load(); n != 2 {
		t.Fatalf("%d round trips for three callers in two waves, want 2", n)
	}

	// A caller that accepts any round started after its since joins the
	// round on the wire when it started after since, and no more rounds
	// run.
	before := time.Now()
	dDone := make(chan struct{})
	go func() { c.Do(ctx, time.Now(), trip); close(dDone) }()
	if n := <-inTrip; n != 3 {
		t.Fatalf("third round = %d", n)
	}
	eDone := make(chan error)
	go func() { eDone <- c.Do(ctx, before, trip) }()
	time.Sleep(50 * time.Millisecond) // E has joined
	release <- struct{}{}             // round 3 ends
	<-dDone
	select {
	case err := <-eDone:
		if err != nil {
			t.Fatal(err)
		}
	case n := <-inTrip:
		t.Fatalf("round %d started for a caller that round 3, started after its since, answers", n)
	}
	if n := started.Load(); n != 3 {
		t.Fatalf("%d round trips, want 3", n)
	}
}

// TestKeepWatching: the watch loop retries until the store is closed and
// warns once per outage, not once per failed attempt.
func TestKeepWatching(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	// Five refused attempts, one that was up and broke, five refused
	// attempts: two outages.
	attempts := 0
	once := func(context.Context) (bool, error) {
		attempts++
		return attempts == 6, errors.New("refused")
	}
	session.KeepWatching(t.Context(), log, "channel lost", time.Millisecond,
		func() bool { return attempts == 11 }, once)
	if attempts != 11 {
		t.Fatalf("%d attempts, want 11: the loop did not stop when the store closed", attempts)
	}
	if n := strings.Count(buf.String(), "channel lost"); n != 2 {
		t.Fatalf("%d warnings for two outages, want 2:\n%s", n, buf.String())
	}
}

// TestCoalesceSynced: Synced is when the latest round that succeeded
// started, taken before its round trip was sent (a later reading would
// claim changes the round trip may have missed); a failed round leaves it.
func TestCoalesceSynced(t *testing.T) {
	var c session.Coalesce
	if !c.Synced().IsZero() {
		t.Fatal("Synced before any round is not zero")
	}
	// One trip for every call, as in a store: a round already running
	// serves the next callers with the trip it was started with.
	var sent atomic.Pointer[time.Time]
	var fail atomic.Bool
	trip := func(context.Context) error {
		now := time.Now()
		sent.Store(&now)
		time.Sleep(5 * time.Millisecond)
		if fail.Load() {
			return errors.New("down")
		}
		return nil
	}
	ctx := t.Context()
	for range 3 {
		before := time.Now()
		if err := c.Do(ctx, time.Now(), trip); err != nil {
			t.Fatal(err)
		}
		if got := c.Synced(); got.Before(before) || got.After(*sent.Load()) {
			t.Fatalf("Synced = %v, want between the call (%v) and the round trip (%v)", got, before, *sent.Load())
		}
	}
	last := c.Synced()
	fail.Store(true)
	if err := c.Do(ctx, time.Now(), trip); err == nil {
		t.Fatal("a failed round reported success")
	}
	if got := c.Synced(); !got.Equal(last) {
		t.Fatalf("a failed round moved Synced from %v to %v", last, got)
	}
}

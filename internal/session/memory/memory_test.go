package memory

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/testclock"
)

// TestStore runs the conformance suite twice: with the default sweep
// interval, so that expiry relies on the checks on every access alone, and
// with a sweeper fast enough to remove records while the suite uses them.
func TestStore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{
		{"LazyExpiry", 0},
		{"FastSweep", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) session.Store {
				s := New(Options{SweepInterval: tc.interval})
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

func BenchmarkStore(b *testing.B) {
	s := New(Options{})
	b.Cleanup(func() { s.Close() })
	storetest.RunBenchmarks(b, s)
}

func newClock() *testclock.Clock { return testclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) }

// indexes returns copies of s's secondary indexes, as subject or SID to the
// sorted keys under it.
func indexes(s *Store) (bySubject, bySID map[string][]session.Key) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	flatten := func(index map[string]map[session.Key]struct{}) map[string][]session.Key {
		out := map[string][]session.Key{}
		for v, keys := range index {
			out[v] = slices.Sorted(maps.Keys(keys))
		}
		return out
	}
	return flatten(s.bySubject), flatten(s.bySID)
}

func TestSweepRemovesExpiredRecordsAndIndexEntries(t *testing.T) {
	clock := newClock()
	s := New(Options{Now: clock.Now, SweepInterval: time.Millisecond})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()

	keep := storetest.SweepFixture(t, s)

	// Many sweeps run while the clock stands still: nothing goes.
	time.Sleep(20 * time.Millisecond)
	if n := s.Len(); n != 5 {
		t.Fatalf("Len() = %d before expiry, want 5", n)
	}

	// Only the sweeper touches the store from here on: no lazy expiry can
	// take the credit.
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Len() = %d 5s after expiry, want 1: the sweeper does not run", s.Len())
		}
		time.Sleep(time.Millisecond)
	}

	bySubject, bySID := indexes(s)
	if want := map[string][]session.Key{"bob": {keep}}; !maps.EqualFunc(bySubject, want, slices.Equal) {
		t.Errorf("subject index after sweep = %v, want %v", bySubject, want)
	}
	if want := map[string][]session.Key{"b2": {keep}}; !maps.EqualFunc(bySID, want, slices.Equal) {
		t.Errorf("sid index after sweep = %v, want %v", bySID, want)
	}
	if _, err := s.Get(ctx, keep); err != nil {
		t.Errorf("Get(unexpired record) after sweep: %v", err)
	}
}

// TestExpiryIsExact checks the boundary with the injected clock: a record is
// live strictly before now+ttl and gone from then on, before any sweep.
func TestExpiryIsExact(t *testing.T) {
	clock := newClock()
	s := New(Options{Now: clock.Now}) // default interval: no sweep during the test
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	k := session.NewID().Key()
	if _, err := s.Set(ctx, k, session.Record{Data: []byte("x"), Subject: "alice"}, time.Minute); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, k); err != nil {
		t.Fatalf("Get 1ns before expiry: %v", err)
	}
	clock.Advance(time.Nanosecond)
	if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get at expiry = %v, want ErrNotFound", err)
	}
	if m, err := s.ListBySubject(ctx, "alice"); err != nil || len(m) != 0 {
		t.Fatalf("ListBySubject at expiry = %d records, %v; want none", len(m), err)
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len() = %d, want 1: reads must not need the write lock to hide expired records", n)
	}
	// A write path drops the expired record and its index entries.
	if n, err := storetest.Count(s.DeleteBy(ctx, "alice", "")); err != nil || n != 0 {
		t.Fatalf("DeleteBy at expiry = %d, %v; want 0, nil", n, err)
	}
	if bySubject, _ := indexes(s); len(bySubject) != 0 || s.Len() != 0 {
		t.Fatalf("after DeleteBy: Len() = %d, subject index %v; want both empty", s.Len(), bySubject)
	}
}

// TestCloseStopsSweeper runs in a synctest bubble, which fails the test if
// the sweeper goroutine is still alive when the test function returns.
func TestCloseStopsSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{SweepInterval: time.Second})
		k := session.NewID().Key()
		if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x")}, time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // a few sweeps
		storetest.CheckClose(t, s)
		if n := s.Len(); n != 0 {
			t.Errorf("Len() after Close = %d, want 0", n)
		}
	})
}

func TestMaxRecords(t *testing.T) {
	s := New(Options{MaxRecords: 3})
	defer s.Close()
	ctx := context.Background()
	var keys []session.Key
	for range 3 {
		k := session.NewID().Key()
		keys = append(keys, k)
		if _, err := s.Set(ctx, k, session.Record{Data: []byte("x")}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Set(ctx, session.NewID().Key(), session.Record{}, time.Minute); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("a fourth record: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.CompareAndSwap(ctx, session.NewID().Key(), 0, session.Record{}, time.Minute); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("a fourth record by CAS: err = %v", err)
	}
	if _, err := s.Set(ctx, keys[0], session.Record{Data: []byte("y")}, time.Minute); err != nil {
		t.Errorf("overwriting an existing record at the bound: %v", err)
	}
	s.Delete(ctx, keys[1])
	if _, err := s.Set(ctx, session.NewID().Key(), session.Record{}, time.Minute); err != nil {
		t.Errorf("after a delete: %v", err)
	}
}

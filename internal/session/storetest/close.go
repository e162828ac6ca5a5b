package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// Calls runs every Store method but Close on k (v its version, for
// CompareAndSwap) and returns their errors by name.
func Calls(ctx context.Context, s session.Store, k session.Key, v uint64) map[string]error {
	out := map[string]error{}
	_, out["Get"] = s.Get(ctx, k)
	_, out["Set"] = s.Set(ctx, k, session.Record{Data: []byte("y")}, time.Hour)
	_, out["CompareAndSwap"] = s.CompareAndSwap(ctx, k, v, session.Record{Data: []byte("y")}, time.Hour)
	_, out["Take"] = s.Take(ctx, k)
	out["Delete"] = s.Delete(ctx, k)
	_, out["DeleteBy"] = s.DeleteBy(ctx, "alice", "")
	_, out["ListBySubject"] = s.ListBySubject(ctx, "alice")
	out["Ping"] = s.Ping(ctx)
	return out
}

// CheckClose closes s from four goroutines at once and then once more,
// and fails t unless every Close returns nil and every method afterwards
// fails with session.ErrUnavailable: a closed store is an outage, which
// logs nobody out, never a missing record, which would.
func CheckClose(t *testing.T, s session.Store) {
	t.Helper()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("Close after Close: %v", err)
	}
	for name, err := range Calls(t.Context(), s, session.NewID().Key(), 1) {
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}
}

package gateway_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

// slowPings counts the store's pings, each taking 50 ms so that
// concurrent /readyz callers overlap.
type slowPings struct {
	session.Store
	n atomic.Int64
}

func (s *slowPings) Ping(ctx context.Context) error {
	s.n.Add(1)
	time.Sleep(50 * time.Millisecond)
	return s.Store.Ping(ctx)
}

// TestReadyzCachedAndShared: /readyz is public and unlimited, so however
// often it is asked the store is pinged at most about once a second:
// concurrent callers share one check, later ones within the second get
// its result.
func TestReadyzCachedAndShared(t *testing.T) {
	store := &slowPings{}
	e := newEnv(t, func(o *gateway.Options) { store.Store = memory.New(memory.Options{}); o.Store = store })
	b := e.browser()
	e.clock.Advance(1100 * time.Millisecond) // past whatever startup checked
	store.n.Store(0)

	start := time.Now()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if r := b.get("/readyz"); r.StatusCode != http.StatusOK || r.json(t)["ready"] != true {
				t.Errorf("concurrent readyz: %s %s", r.Status, r.body)
			}
		})
	}
	wg.Wait()
	for range 20 {
		if r := b.get("/readyz"); r.StatusCode != http.StatusOK {
			t.Errorf("readyz: %s %s", r.Status, r.body)
		}
	}
	// One ping per started second: exactly one unless this machine took
	// more than a second for 70 local requests.
	n := store.n.Load()
	if limit := 1 + int64(time.Since(start)/time.Second); n < 1 || n > limit {
		t.Errorf("70 readyz calls in %v pinged the store %d times, want 1 (at most %d)", time.Since(start), n, limit)
	}
	e.clock.Advance(1100 * time.Millisecond)
	if r := b.get("/readyz"); r.StatusCode != http.StatusOK {
		t.Errorf("readyz after a second: %s %s", r.Status, r.body)
	}
	if got := store.n.Load(); got != n+1 {
		t.Errorf("after the cached result aged a second: %d pings, want %d", got, n+1)
	}
}

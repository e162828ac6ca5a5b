package session

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Invalidator is implemented by stores that tell every replica at once
// when a record is changed or deleted, so that a replica's session cache is
// coherent instead of merely short-lived (issue 14). The Manager uses it
// when its store implements it.
type Invalidator interface {
	// Watch delivers, until ctx ends, the keys of records that any client
	// changed or deleted to drop, and calls flush when anything may have
	// changed unseen (the invalidation channel was lost and is back).
	Watch(ctx context.Context, drop func(Key), flush func())
	// Sync returns nil once every change the store had completed by since
	// has been delivered to drop or flush: a round trip that started after
	// since has come back (since is time.Now() for "every change so far").
	// An error means the invalidation channel is down: the cache must not
	// be trusted.
	Sync(ctx context.Context, since time.Time) error
	// Synced is when the latest Sync round trip that succeeded started
	// (zero if none): every change the store had completed by then has
	// been delivered.
	Synced() time.Time
}

// Coalesce shares one round trip among concurrent callers of a Sync: a
// caller joins the round on the wire if it started after the caller's
// since, else the next round, which starts after it joined; at most one
// round runs at a time. A store's Sync is typically Coalesce.Do around one
// PING or SELECT 1 on its invalidation connection.
type Coalesce struct {
	mu      sync.Mutex
	running bool
	current *round // the round on the wire, or just finished
	next    *round
	synced  atomic.Pointer[time.Time] // start of the latest round that succeeded
}

type round struct {
	done  chan struct{}
	err   error
	start time.Time // before its round trip was sent; set under mu
}

// Do runs trip, or waits for a round that started after since, and
// returns its error. A caller whose since is a window before its request
// waits only for the rest of the round on the wire, not for a whole
// round after it: under load, rounds take as long as requests do.
func (c *Coalesce) Do(ctx context.Context, since time.Time, trip func(context.Context) error) error {
	c.mu.Lock()
	r := c.current
	if r == nil || !r.start.After(since) {
		if r = c.next; r == nil {
			r = &round{done: make(chan struct{})}
			c.next = r
		}
		if !c.running {
			c.running = true
			go c.run(context.WithoutCancel(ctx), trip)
		}
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Coalesce) run(ctx context.Context, trip func(context.Context) error) {
	for {
		c.mu.Lock()
		r := c.next
		if r == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.next = nil
		r.start = time.Now() // before the round trip is sent
		c.current = r
		c.mu.Unlock()
		if r.err = trip(ctx); r.err == nil {
			c.synced.Store(&r.start) // rounds run one at a time: it only grows
		}
		close(r.done)
	}
}

// Synced is when the latest round that succeeded started, zero if none.
func (c *Coalesce) Synced() time.Time {
	if t := c.synced.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// KeepWatching is a store's Watch loop: it runs once, which sets up the
// invalidation channel and returns when it breaks (saying whether it was
// up), again every retry until ctx ends or stopped says the store is
// closed. It warns once per outage, not on every retry: a server that
// refuses tracking or LISTEN would otherwise log five lines a second.
func KeepWatching(ctx context.Context, log *slog.Logger, msg string, retry time.Duration, stopped func() bool, once func(context.Context) (bool, error)) {
	quiet := false
	for ctx.Err() == nil && !stopped() {
		up, err := once(ctx)
		if up {
			quiet = false // it was up: this is a new outage
		}
		if ctx.Err() == nil && !stopped() {
			if !quiet {
				log.Warn(msg, "err", err)
			}
			quiet = true
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

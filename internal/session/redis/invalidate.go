package redisstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/moat-bff/moat/internal/session"
)

// Coherent session cache (issue 14). Watch holds one dedicated connection
// with RESP3 CLIENT TRACKING ON BCAST PREFIX {prefix}s:, so Redis pushes the
// key of every record that any client writes, deletes or that expires.
// Redis queues that push on the tracking connection before it answers the
// command that caused it, and replies on one connection arrive in order:
// so once a PING sent on the tracking connection after a logout answered
// has come back, its invalidation has been handled (Sync). While the
// connection is down Sync fails and the manager bypasses its cache; when it
// is back, tracking is switched on first and then the cache is flushed, so
// nothing changed in between is served.
//
// Redis Cluster: tracking is per node, and Watch would need one connection
// per primary; it is not implemented, so on a cluster Sync always fails
// and the cache is bypassed (the manager then reads every request from the
// store, which is correct and slower).

// watchRetry is the pause between attempts to re-establish the tracking
// connection.
const watchRetry = 200 * time.Millisecond

type watcher struct {
	mu   sync.Mutex
	conn rueidis.DedicatedClient // nil while down
	sync session.Coalesce
}

// Watch implements session.Invalidator.
func (s *Store) Watch(ctx context.Context, drop func(session.Key), flush func()) {
	if s.cfg.mode == modeCluster {
		return
	}
	go s.watchLoop(ctx, drop, flush)
}

func (s *Store) watchLoop(ctx context.Context, drop func(session.Key), flush func()) {
	prefix := s.recordKey("")
	for ctx.Err() == nil && !s.closed.Load() {
		err := s.watchOnce(ctx, prefix, drop, flush)
		if ctx.Err() == nil && !s.closed.Load() {
			s.log.Warn("redis session store: invalidation connection lost; the session cache is bypassed until it is back", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(watchRetry):
		}
	}
}

// watchOnce sets up one tracking connection and returns when it breaks.
func (s *Store) watchOnce(ctx context.Context, prefix string, drop func(session.Key), flush func()) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	dc, cancel := c.Dedicate()
	defer cancel()
	lost := dc.SetOnInvalidations(func(keys []rueidis.RedisMessage) {
		if keys == nil { // a flush, or the connection is gone
			flush()
			return
		}
		for _, k := range keys {
			if str, err := k.ToString(); err == nil && strings.HasPrefix(str, prefix) {
				drop(session.Key(str[len(prefix):]))
			}
		}
	})
	rctx, rcancel := s.roundTrip(ctx)
	err = dc.Do(rctx, dc.B().Arbitrary("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX").Args(prefix).Build()).Error()
	rcancel()
	if err != nil {
		return err
	}
	// From here every change is pushed; what changed before is unknown.
	flush()
	s.watch.mu.Lock()
	s.watch.conn = dc
	s.watch.mu.Unlock()
	defer func() {
		s.watch.mu.Lock()
		s.watch.conn = nil
		s.watch.mu.Unlock()
		flush()
	}()
	select {
	case err, ok := <-lost:
		if !ok || err == nil {
			err = errors.New("tracking connection closed")
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errNotWatching is Sync's answer while no tracking connection is up.
var errNotWatching = errors.New("redis store: no invalidation connection")

// Sync implements session.Invalidator: one PING, shared by concurrent
// callers, on the tracking connection.
func (s *Store) Sync(ctx context.Context) error {
	return s.watch.sync.Do(ctx, func(ctx context.Context) error {
		s.watch.mu.Lock()
		dc := s.watch.conn
		s.watch.mu.Unlock()
		if dc == nil {
			return errNotWatching
		}
		rctx, cancel := s.roundTrip(ctx)
		defer cancel()
		return dc.Do(rctx, dc.B().Ping().Build()).Error()
	})
}

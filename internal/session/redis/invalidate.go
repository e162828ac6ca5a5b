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
// Redis Cluster: tracking is per node, so Watch holds one tracking
// connection per node the client knows (primaries and replicas), and Sync
// sends a PING on each: the node that ran a logout's DEL has pushed its
// invalidation before its answer. Every topologyCheck Watch compares the
// client's nodes with those it tracks and, when they differ (a failover, a
// new node), tracks the new set and flushes the cache. A node that took
// over slots between two checks is untracked for at most topologyCheck,
// plus the cache_ttl of what was cached from it.

// watchRetry is the pause between attempts to re-establish the tracking
// connection.
const watchRetry = 200 * time.Millisecond

// topologyCheck is how often a cluster's nodes are compared with the
// tracked ones.
const topologyCheck = time.Second

type watcher struct {
	mu    sync.Mutex
	conns []rueidis.DedicatedClient // nil while down
	sync  session.Coalesce
}

// Watch implements session.Invalidator.
func (s *Store) Watch(ctx context.Context, drop func(session.Key), flush func()) {
	go s.watchLoop(ctx, drop, flush)
}

func (s *Store) watchLoop(ctx context.Context, drop func(session.Key), flush func()) {
	prefix := s.recordKey("")
	session.KeepWatching(ctx, s.log, "redis session store: invalidation connection lost; the session cache is bypassed until it is back",
		watchRetry, s.closed.Load, func(ctx context.Context) (bool, error) { return s.watchOnce(ctx, prefix, drop, flush) })
}

// watchOnce sets up the tracking connections (one per node on a cluster)
// and returns when one breaks or, on a cluster, the nodes change.
func (s *Store) watchOnce(ctx context.Context, prefix string, drop func(session.Key), flush func()) (bool, error) {
	c, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	nodes := map[string]rueidis.Client{"": c}
	if s.cfg.mode == modeCluster {
		nodes = c.Nodes()
	}
	onInvalidations := func(keys []rueidis.RedisMessage) {
		if keys == nil { // a flush, or the connection is gone
			flush()
			return
		}
		for _, k := range keys {
			if str, err := k.ToString(); err == nil && strings.HasPrefix(str, prefix) {
				drop(session.Key(str[len(prefix):]))
			}
		}
	}
	var conns []rueidis.DedicatedClient
	lost := make(chan error, len(nodes))
	for _, node := range nodes {
		dc, cancel := node.Dedicate()
		defer cancel()
		ch := dc.SetOnInvalidations(onInvalidations)
		go func() {
			err, ok := <-ch
			if !ok || err == nil {
				err = errors.New("tracking connection closed")
			}
			lost <- err
		}()
		rctx, rcancel := s.roundTrip(ctx)
		err = dc.Do(rctx, dc.B().Arbitrary("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX").Args(prefix).Build()).Error()
		rcancel()
		if err != nil {
			return false, err
		}
		conns = append(conns, dc)
	}
	// From here every change is pushed; what changed before is unknown.
	flush()
	s.watch.mu.Lock()
	s.watch.conns = conns
	s.watch.mu.Unlock()
	defer func() {
		s.watch.mu.Lock()
		s.watch.conns = nil
		s.watch.mu.Unlock()
		flush()
	}()
	tick := time.NewTicker(topologyCheck)
	defer tick.Stop()
	for {
		select {
		case err := <-lost:
			return true, err
		case <-ctx.Done():
			return true, ctx.Err()
		case <-tick.C:
			if s.cfg.mode == modeCluster && !sameNodes(nodes, c.Nodes()) {
				return true, errors.New("cluster nodes changed")
			}
		}
	}
}

func sameNodes(a, b map[string]rueidis.Client) bool {
	if len(a) != len(b) {
		return false
	}
	for addr := range a {
		if _, ok := b[addr]; !ok {
			return false
		}
	}
	return true
}

// errNotWatching is Sync's answer while no tracking connection is up.
var errNotWatching = errors.New("redis store: no invalidation connection")

// Sync implements session.Invalidator: one PING per tracking connection,
// shared by concurrent callers.
func (s *Store) Sync(ctx context.Context, since time.Time) error {
	return s.watch.sync.Do(ctx, since, func(ctx context.Context) error {
		s.watch.mu.Lock()
		conns := s.watch.conns
		s.watch.mu.Unlock()
		if conns == nil {
			return errNotWatching
		}
		rctx, cancel := s.roundTrip(ctx)
		defer cancel()
		if len(conns) == 1 {
			return conns[0].Do(rctx, conns[0].B().Ping().Build()).Error()
		}
		errs := make(chan error, len(conns))
		for _, dc := range conns {
			go func() { errs <- dc.Do(rctx, dc.B().Ping().Build()).Error() }()
		}
		var first error
		for range conns {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	})
}

// Synced implements session.Invalidator.
func (s *Store) Synced() time.Time { return s.watch.sync.Synced() }

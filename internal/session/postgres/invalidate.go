package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/moat-bff/moat/internal/session"
)

// Coherent session cache (issue 14). Every statement that changes or
// deletes a session calls pg_notify(channel, key) in the same statement, so
// the notification is queued when that change commits, before its client
// hears of the commit. Watch holds one connection that LISTENs on the
// channel. PostgreSQL hands a listening session's notifications to its
// client before the ReadyForQuery that ends each of its commands, once the
// notifying transaction has committed: so once a SELECT 1 sent on the
// listening connection after a logout answered has completed, that
// logout's notification has been handled (Sync). While the connection is
// down Sync fails and the manager bypasses its cache; when it is back, it
// listens first and then flushes the cache. A heartbeat every
// watchHeartbeat notices a dead connection while nobody calls Sync.

const (
	watchRetry     = 200 * time.Millisecond
	watchHeartbeat = time.Second
)

type watcher struct {
	mu   sync.Mutex // serialises use of conn
	conn *pgx.Conn  // nil while down
	sync session.Coalesce
}

// Watch implements session.Invalidator.
func (s *Store) Watch(ctx context.Context, drop func(session.Key), flush func()) {
	go s.watchLoop(ctx, drop, flush)
}

func (s *Store) watchLoop(ctx context.Context, drop func(session.Key), flush func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.base, cancel)() // Close ends the pause between attempts
	session.KeepWatching(ctx, s.log, "PostgreSQL invalidation connection lost; the session cache is bypassed until it is back",
		watchRetry, s.closed.Load, func(ctx context.Context) (bool, error) { return s.watchOnce(ctx, drop, flush) })
}

func (s *Store) watchOnce(ctx context.Context, drop func(session.Key), flush func()) (bool, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		if n.Channel == s.channel {
			drop(session.Key(n.Payload))
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err == nil {
		_, err = conn.Exec(cctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize())
	}
	cancel()
	if err != nil {
		if conn != nil {
			conn.Close(context.Background())
		}
		return false, err
	}
	// From here every change is notified; what changed before is unknown.
	flush()
	s.watch.mu.Lock()
	s.watch.conn = conn
	s.watch.mu.Unlock()
	defer func() {
		s.watch.mu.Lock()
		s.watch.conn = nil
		s.watch.mu.Unlock()
		flush()
		conn.Close(context.Background())
	}()
	t := time.NewTicker(watchHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-s.base.Done():
			return true, errClosed
		case <-t.C:
			if err := s.roundTripListen(ctx); err != nil {
				return true, err
			}
		}
	}
}

var errNotWatching = errors.New("postgres: no invalidation connection")

// roundTripListen runs SELECT 1 on the listening connection, which
// delivers every notification committed before it. An error closes the
// connection, so that the watch loop reconnects.
func (s *Store) roundTripListen(ctx context.Context) error {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	conn := s.watch.conn
	if conn == nil {
		return errNotWatching
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := conn.Exec(rctx, "SELECT 1"); err != nil {
		s.watch.conn = nil
		conn.Close(context.Background()) // the watch loop's heartbeat then fails and reconnects
		return err
	}
	return nil
}

// Sync implements session.Invalidator: one SELECT 1, shared by concurrent
// callers, on the listening connection.
func (s *Store) Sync(ctx context.Context, since time.Time) error {
	return s.watch.sync.Do(ctx, since, s.roundTripListen)
}

// Synced implements session.Invalidator.
func (s *Store) Synced() time.Time { return s.watch.sync.Synced() }

package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/moat-bff/moat/internal/session"
)

// The schema version lives in the table's comment, so that it travels with
// the table (pg_dump keeps it) and needs no second table that replicas using
// different tables in one schema would race to create.
const commentPrefix = "moat session store; schema version "

var commentVersion = regexp.MustCompile(`^moat session store; schema version ([0-9]+)\b`)

// migrations[i] brings the schema from version i to version i+1. To change
// the schema, append a step; never edit a released one. Steps run in one
// transaction under the migration lock, and must keep working for replicas
// still running the previous release (add columns with defaults, add
// indexes, and so on) because replicas are upgraded one at a time.
//
// Each string is a template: {table}, {seq} and {name} are replaced by the
// qualified table, the qualified version sequence and the bare table name.
var migrations = [][]string{
	// 1: the sessions table. Versions come from a sequence so that they
	// never repeat for a key, even across delete and re-create. subject and
	// sid are '' rather than NULL for records that are not sessions; the
	// partial indexes leave those out.
	{
		`CREATE SEQUENCE IF NOT EXISTS {seq} AS bigint MINVALUE 1 NO CYCLE`,
		`CREATE TABLE IF NOT EXISTS {table} (
			key        text        PRIMARY KEY,
			data       bytea       NOT NULL,
			version    bigint      NOT NULL,
			subject    text        NOT NULL DEFAULT '',
			sid        text        NOT NULL DEFAULT '',
			expires_at timestamptz NOT NULL
		)`,
		`ALTER SEQUENCE {seq} OWNED BY {table}.version`,
		`CREATE INDEX IF NOT EXISTS {name}_subject_idx ON {table} (subject) WHERE subject <> ''`,
		`CREATE INDEX IF NOT EXISTS {name}_sid_idx ON {table} (sid) WHERE sid <> ''`,
		`CREATE INDEX IF NOT EXISTS {name}_expires_at_idx ON {table} (expires_at)`,
	},
}

// lockKey derives the pg_advisory_xact_lock key that serialises migrations
// of one table, so replicas starting together do not race on DDL.
func lockKey(st settings) int64 {
	h := fnv.New64a()
	h.Write([]byte("moat/session/postgres\x00"))
	h.Write([]byte(st.schema))
	h.Write([]byte{0})
	h.Write([]byte(st.table))
	return int64(h.Sum64())
}

// ensureSchema makes sure the table exists at the current schema version,
// migrating it if needed. It is cheap once that has succeeded; until then
// every store call and the background loop try again, one at a time, so the
// store recovers by itself when the database comes back.
func (s *Store) ensureSchema(ctx context.Context) error {
	if s.ready.Load() {
		return nil
	}
	select {
	case s.migrating <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.base.Done():
		return errClosed
	}
	defer func() { <-s.migrating }()
	if s.ready.Load() {
		return nil
	}
	var err error
	for range 2 {
		// A second attempt only helps when another process created a
		// shared object (the schema) between our check and our CREATE.
		if s.readOnly {
			err = s.inspect(ctx)
			break
		}
		if err = s.migrate(ctx); !isDuplicateObject(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("preparing table %s: %w", s.name, err)
	}
	s.ready.Store(true)
	return nil
}

var errClosed = errors.New("store is closed")

// migrate runs the missing migrations in one transaction holding the
// table's advisory lock. Once the comment shows the current version it runs
// no DDL at all, so a role without CREATE rights can use a table a DBA set up.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { // a no-op after Commit
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
		return err
	}
	if s.st.schema != "" {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, s.st.schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{s.st.schema}.Sanitize()); err != nil {
				return err
			}
		}
	}
	var comment *string
	if err := tx.QueryRow(ctx, `SELECT obj_description(to_regclass($1), 'pg_class')`, s.table).Scan(&comment); err != nil {
		return err
	}
	from := 0
	if comment != nil {
		if m := commentVersion.FindStringSubmatch(*comment); m != nil {
			from, _ = strconv.Atoi(m[1])
		}
	}
	to := len(migrations)
	if from >= to {
		if from > to {
			s.log.Warn("session table has a newer schema than this moat release knows; carrying on",
				"table", s.name, "version", from, "known", to)
		}
		return tx.Commit(ctx)
	}
	r := strings.NewReplacer("{table}", s.table, "{seq}", s.seq, "{name}", s.st.table)
	for v := from; v < to; v++ {
		for _, stmt := range migrations[v] {
			if _, err := tx.Exec(ctx, r.Replace(stmt)); err != nil {
				return fmt.Errorf("migration to version %d: %w", v+1, err)
			}
		}
	}
	comment2 := commentPrefix + strconv.Itoa(to) + " (managed by moat; do not edit)"
	if _, err := tx.Exec(ctx, `COMMENT ON TABLE `+s.table+` IS `+quoteLiteral(comment2)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.log.Info("session table migrated", "table", s.name, "from", from, "to", to)
	return nil
}

// inspect is migrate for a read-only store: it reports a missing schema,
// table or migration without changing anything.
func (s *Store) inspect(ctx context.Context) error {
	if s.st.schema != "" {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, s.st.schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("schema %q does not exist (is schema= spelt right? moat serve or moat migrate creates it): %w", s.st.schema, session.ErrNotCreated)
		}
	}
	var exists bool
	var comment *string
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, obj_description(to_regclass($1), 'pg_class')`, s.table).Scan(&exists, &comment); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("table %s does not exist yet (moat serve or moat migrate creates it): %w", s.name, session.ErrNotCreated)
	}
	from := 0
	if comment != nil {
		if m := commentVersion.FindStringSubmatch(*comment); m != nil {
			from, _ = strconv.Atoi(m[1])
		}
	}
	if from < len(migrations) {
		return fmt.Errorf("table %s is at schema version %d, this moat needs %d (moat serve or moat migrate migrates it): %w", s.name, from, len(migrations), session.ErrNotCreated)
	}
	return nil
}

// quoteLiteral quotes a constant string for SQL (COMMENT takes no
// parameters).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// isDuplicateObject reports the errors of two processes creating the same
// catalog object at once, which IF NOT EXISTS does not prevent.
func isDuplicateObject(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "23505", "42P06", "42P07", "42710": // unique_violation, duplicate_schema, duplicate_table, duplicate_object
		return true
	}
	return false
}

// transient reports whether err may go away by itself (the database is down,
// restarting, overloaded or unreachable), as opposed to a configuration
// error that Open should report at once.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true // network errors, timeouts, EOF: no answer from a server
	}
	if len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "08", // connection exception
		"40", // transaction rollback (serialization failure, deadlock)
		"53", // insufficient resources (too many connections, disk full)
		"57", // operator intervention (shutdown, cannot connect now)
		"58": // system error
		return true
	}
	return pgErr.Code == "55P03" // lock_not_available
}

// Backoff of the background loop while the schema is not ready.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = 30 * time.Second
)

// sweepBatch bounds one sweeping statement, so that it holds few locks and
// a short transaction however many records expired at once.
const sweepBatch = 1000

// maxSweepBatches bounds one sweep; what is left waits for the next one.
const maxSweepBatches = 100

// loop is the store's one background goroutine: it retries the schema while
// that is not ready, then sweeps expired records every sweepInterval.
func (s *Store) loop() {
	defer close(s.done)
	retry := minRetry
	wait := s.sweepInterval
	if !s.ready.Load() {
		wait = retry
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-s.base.Done():
			return
		case <-timer.C:
		}
		if !s.ready.Load() {
			ctx, cancel := context.WithTimeout(s.base, s.slowTimeout)
			err := s.ensureSchema(ctx)
			cancel()
			if err != nil {
				if s.base.Err() != nil {
					return
				}
				s.log.Warn("PostgreSQL session store not ready; will retry", "table", s.name, "retry_in", retry, "err", err)
				timer.Reset(retry)
				retry = min(2*retry, maxRetry)
				continue
			}
			s.log.Info("PostgreSQL session store ready", "table", s.name)
			retry = minRetry
		}
		s.sweep()
		timer.Reset(s.sweepInterval)
	}
}

// sweep deletes expired records in batches. Replicas sweeping at the same
// time skip each other's locked rows instead of waiting or deadlocking, and
// a row revived by a write since the subselect saw it is left alone.
func (s *Store) sweep() {
	total := 0
	for range maxSweepBatches {
		ctx, cancel := context.WithTimeout(s.base, s.slowTimeout)
		tag, err := s.pool.Exec(ctx, s.q.sweep, sweepBatch)
		cancel()
		if err != nil {
			if s.base.Err() == nil {
				s.log.Warn("sweeping expired sessions failed", "table", s.name, "err", err)
				s.noteError(err)
			}
			break
		}
		n := int(tag.RowsAffected())
		total += n
		if n < sweepBatch {
			break
		}
	}
	if total > 0 {
		s.log.Debug("swept expired sessions", "table", s.name, "deleted", total)
	}
}

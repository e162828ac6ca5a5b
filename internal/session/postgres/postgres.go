// Package postgres is a session.Store on PostgreSQL, so that many stateless
// moat replicas share their sessions.
//
// Expiry uses the database clock (now()) only, so replicas whose clocks
// disagree still agree on which records are live. Versions come from a
// sequence and never repeat. Every call is bounded by a short timeout:
// during an outage moat must answer 503 at once rather than queue requests.
//
// Startup is lazy: Open fails only for a bad URL or a database that answers
// but refuses the schema (no rights, wrong password, no such database). When
// the database cannot be reached, Open still returns a Store, which reports
// session.ErrUnavailable (and so not-ready on /readyz) until the database
// answers; the schema is then created on the next call or by the background
// loop, whichever comes first, and the store recovers by itself.
//
// # Connection loss
//
// A connection that breaks under a statement (a restart, a failover, a load
// balancer's idle timeout) costs no user request: the pool is reset (its
// idle connections broke too) and the statement runs once more on a fresh
// connection. Only a broken connection is retried (EOF, reset, SQLSTATE
// class 08, 57P01/57P02), never an answer from the database nor a timeout.
// What may run twice must have the effect of once:
//
//   - Get, Set (an upsert), Delete, DeleteBy, ListBySubject and Ping are
//     idempotent. A DeleteBy whose reply was lost deletes its records all
//     the same but cannot report them.
//   - CompareAndSwap retries with a statement that also accepts a live row
//     holding exactly the bytes it writes: that row is this very write,
//     landed before the connection broke. moat's records are sealed with a
//     fresh random nonce, so no other write carries the same bytes.
//   - Take (DELETE ... RETURNING) is retried at once only when pgx knows
//     nothing was sent (pgconn.SafeToRetry). Otherwise it may have taken
//     the record: if the record is still there it did not, and one more
//     DELETE is exactly one take; if it is gone, nobody can tell who took
//     it and Take returns ErrUnavailable (a 503 that logs nobody out), never
//     ErrNotFound for a record nobody else took, nor the record twice.
//
// TestConnectionCut and TestLostReply prove this through a TCP relay.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/moat-bff/moat/internal/session"
)

// DefaultSweepInterval is how often expired records are deleted when
// Options.SweepInterval is not set. Reads ignore expired records anyway; the
// sweep only gives their space back.
const DefaultSweepInterval = time.Minute

// Options configures a Store beyond what the URL says. The zero value is
// ready to use.
type Options struct {
	// Logger receives startup, migration and sweep messages; nil discards
	// them. Nothing logged contains the password or a record.
	Logger *slog.Logger
	// SweepInterval is the period of the background sweep of expired
	// records; zero or negative means DefaultSweepInterval.
	SweepInterval time.Duration
	// ReadOnly opens the store for reading only (moat check): no schema or
	// table is created or migrated and nothing is swept. A missing (or
	// older) table is an error wrapping session.ErrNotCreated.
	ReadOnly bool
}

// Store is a session.Store on a PostgreSQL table. Create it with Open and
// release it with Close, which stops its background goroutine and closes its
// connection pool.
type Store struct {
	pool          *pgxpool.Pool
	log           *slog.Logger
	st            settings
	name          string // schema.table, for logs and errors
	table, seq    string // quoted, qualified names for SQL
	lockKey       int64
	readOnly      bool
	timeout       time.Duration // bound of every store call
	slowTimeout   time.Duration // bound of migrations and sweep batches
	sweepInterval time.Duration
	q             queries

	ready     atomic.Bool   // the schema is known to be current
	migrating chan struct{} // one-slot semaphore: one migration at a time

	channel string // LISTEN/NOTIFY channel of this table's invalidations
	watch   watcher

	resetMu sync.Mutex
	resetAt time.Time // the last reset of the pool after a broken connection

	closed    atomic.Bool
	closeOnce sync.Once
	base      context.Context // cancelled by Close
	cancel    context.CancelFunc
	done      chan struct{} // closed when loop has returned
}

var _ session.Store = (*Store)(nil)

// queries are the statements of a Store, built once for its table. pgx
// prepares and caches them per connection.
type queries struct {
	get, set, create, cas, take, del   string
	exists, createRetry, casRetry      string
	delBySub, delBySID, delBySubAndSID string
	list, sweep                        string
}

// newQueries builds the statements. Those that change or delete a session
// a replica may have cached also pg_notify(channel, key) in the same
// statement, so the notification is sent exactly when the change commits
// (see invalidate.go).
func newQueries(table, seq, channel string) queries {
	r := strings.NewReplacer("{t}", table, "{nextval}", "nextval("+quoteLiteral(seq)+")", "{ch}", quoteLiteral(channel))
	const upsert = `INSERT INTO {t} AS cur (key, data, version, subject, sid, expires_at)
		VALUES ($1, $2, {nextval}, $3, $4, now() + $5::bigint * interval '1 microsecond')
		ON CONFLICT (key) DO UPDATE SET data = excluded.data, version = excluded.version,
			subject = excluded.subject, sid = excluded.sid, expires_at = excluded.expires_at`
	return queries{
		get: r.Replace(`SELECT data, version, subject, sid FROM {t} WHERE key = $1 AND expires_at > now()`),
		set: r.Replace(upsert + ` RETURNING version`),
		// Set-if-absent: the update branch runs only over an expired row.
		create: r.Replace(upsert + ` WHERE cur.expires_at <= now() RETURNING version`),
		// One statement, one snapshot: upd is the swap, live tells a
		// conflict (a live row with another version) from a missing row.
		cas: r.Replace(`WITH live AS (
				SELECT version FROM {t} WHERE key = $1 AND expires_at > now()
			), upd AS (
				UPDATE {t} SET data = $3, version = {nextval}, subject = $4, sid = $5,
					expires_at = now() + $6::bigint * interval '1 microsecond'
				WHERE key = $1 AND version = $2 AND expires_at > now()
				RETURNING version, pg_notify({ch}, key)
			)
			SELECT (SELECT version FROM upd), (SELECT version FROM live)`),
		// The retries of a write whose connection broke: the live record
		// holding exactly the bytes this write sent is this write, landed
		// before the connection broke (see "Connection loss").
		createRetry: r.Replace(upsert + ` WHERE cur.expires_at <= now() OR cur.data = $2 RETURNING version`),
		casRetry: r.Replace(`WITH live AS (
				SELECT version FROM {t} WHERE key = $1 AND expires_at > now()
			), upd AS (
				UPDATE {t} SET data = $3, version = {nextval}, subject = $4, sid = $5,
					expires_at = now() + $6::bigint * interval '1 microsecond'
				WHERE key = $1 AND (version = $2 OR data = $3) AND expires_at > now()
				RETURNING version, pg_notify({ch}, key)
			)
			SELECT (SELECT version FROM upd), (SELECT version FROM live)`),
		exists: r.Replace(`SELECT EXISTS (SELECT 1 FROM {t} WHERE key = $1 AND expires_at > now())`),
		take:   r.Replace(`DELETE FROM {t} WHERE key = $1 AND expires_at > now() RETURNING data, version, subject, sid`),
		del:    r.Replace(`DELETE FROM {t} WHERE key = $1 RETURNING pg_notify({ch}, key)`),
		// The redundant "<> ''" terms let generic plans use the partial
		// indexes.
		delBySub:       r.Replace(`DELETE FROM {t} WHERE subject = $1 AND subject <> '' AND expires_at > now() RETURNING key, pg_notify({ch}, key)`),
		delBySID:       r.Replace(`DELETE FROM {t} WHERE sid = $1 AND sid <> '' AND subject <> '' AND expires_at > now() RETURNING key, pg_notify({ch}, key)`),
		delBySubAndSID: r.Replace(`DELETE FROM {t} WHERE subject = $1 AND subject <> '' AND sid = $2 AND expires_at > now() RETURNING key, pg_notify({ch}, key)`),
		list:           r.Replace(`SELECT key, data, version, sid FROM {t} WHERE subject = $1 AND subject <> '' AND expires_at > now()`),
		sweep: r.Replace(`DELETE FROM {t} WHERE key IN (
				SELECT key FROM {t} WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED
			) AND expires_at <= now()`),
	}
}

// Open connects to the database named by rawURL, a postgres:// or
// postgresql:// URL as pgx understands it (sslmode, pool_max_conns and the
// other pgx and libpq parameters pass through), prepares the table and
// starts the sweeper. moat's own query parameters, removed before pgx sees
// the URL:
//
//   - table: the table name, a plain lower-case identifier (default
//     moat_sessions); its sequence and indexes are named after it.
//   - schema: the schema of the table, created if missing (default: the
//     first schema of the search_path, which the URL may also set).
//   - timeout: the bound of every store call, as a Go duration (default 1s);
//     also the connect timeout unless connect_timeout is given.
//
// Open waits for the first schema check at most for ctx. It fails for a bad
// URL or a database that answers but refuses; an unreachable database is no
// error (see the package documentation).
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	st, cfg, err := parseConfig(rawURL)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := o.SweepInterval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	// Not ctx: the pool outlives Open.
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %v", err)
	}
	name := st.table
	if st.schema != "" {
		name = st.schema + "." + st.table
	}
	s := &Store{
		pool:          pool,
		log:           log,
		st:            st,
		name:          name,
		table:         st.qualified(st.table),
		seq:           st.qualified(st.table + "_version_seq"),
		lockKey:       lockKey(st),
		timeout:       st.timeout,
		slowTimeout:   max(10*st.timeout, 10*time.Second),
		sweepInterval: interval,
		migrating:     make(chan struct{}, 1),
		readOnly:      o.ReadOnly,
		done:          make(chan struct{}),
	}
	s.channel = fmt.Sprintf("moat_%016x", uint64(s.lockKey))
	s.q = newQueries(s.table, s.seq, s.channel)
	s.base, s.cancel = context.WithCancel(context.Background())

	cc := cfg.ConnConfig
	log.Info("opening PostgreSQL session store", "host", cc.Host, "port", cc.Port, "database", cc.Database,
		"user", cc.User, "table", name, "timeout", st.timeout, "max_conns", cfg.MaxConns)

	mctx, cancel := context.WithTimeout(ctx, s.slowTimeout)
	err = s.ensureSchema(mctx)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, session.ErrNotCreated):
		s.shutdown()
		return nil, fmt.Errorf("postgres: %w", err)
	case ctx.Err() != nil:
		s.shutdown()
		return nil, fmt.Errorf("postgres: open %s: %w", name, ctx.Err())
	case !transient(err):
		s.shutdown()
		return nil, fmt.Errorf("postgres: open: %w", err)
	default:
		log.Warn("PostgreSQL unreachable; starting anyway, not ready until it answers",
			"table", name, "err", err)
	}
	if s.readOnly {
		close(s.done)
	} else {
		go s.loop()
	}
	return s, nil
}

// Get returns the live record under key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key session.Key) (session.Record, error) {
	return s.readRecord(ctx, "get", s.q.get, key, true)
}

// Set writes r under key unconditionally (an upsert) with a fresh version
// from the sequence.
func (s *Store) Set(ctx context.Context, key session.Key, r session.Record, ttl time.Duration) (uint64, error) {
	op := "set " + key.Short()
	if err := checkWrite(op, key, r, ttl); err != nil {
		return 0, err
	}
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var v int64
	err = s.retry(ctx, func() error {
		return s.pool.QueryRow(octx, s.q.set, string(key), data(r), r.Subject, r.SID, micros(ttl)).Scan(&v)
	})
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	return uint64(v), nil
}

// CompareAndSwap writes r under key only if the live record has version old
// (or, with old == 0, if there is no live record), in one statement.
func (s *Store) CompareAndSwap(ctx context.Context, key session.Key, old uint64, r session.Record, ttl time.Duration) (uint64, error) {
	op := fmt.Sprintf("compare-and-swap %s", key.Short())
	if err := checkWrite(op, key, r, ttl); err != nil {
		return 0, err
	}
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	if old == 0 {
		var v int64
		query := s.q.create
		err := s.retry(ctx, func() error {
			err := s.pool.QueryRow(octx, query, string(key), data(r), r.Subject, r.SID, micros(ttl)).Scan(&v)
			query = s.q.createRetry
			return err
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("postgres: %s: a live record exists: %w", op, session.ErrConflict)
		}
		if err != nil {
			return 0, s.fail(ctx, op, err)
		}
		return uint64(v), nil
	}
	want := int64(-1) // versions are positive: matches nothing
	if old <= math.MaxInt64 {
		want = int64(old)
	}
	var swapped, live *int64
	query := s.q.cas
	err = s.retry(ctx, func() error {
		err := s.pool.QueryRow(octx, query, string(key), want, data(r), r.Subject, r.SID, micros(ttl)).Scan(&swapped, &live)
		query = s.q.casRetry
		return err
	})
	switch {
	case err != nil:
		return 0, s.fail(ctx, op, err)
	case swapped != nil:
		return uint64(*swapped), nil
	case live == nil:
		return 0, notFound(op)
	default:
		return 0, fmt.Errorf("postgres: %s: version %d, want %d: %w", op, *live, old, session.ErrConflict)
	}
}

// Take deletes the live record under key and returns it, in one DELETE ...
// RETURNING: of concurrent callers exactly one gets a row.
//
// Take is not blindly retried when the connection breaks: see "Connection
// loss" in the package documentation.
func (s *Store) Take(ctx context.Context, key session.Key) (session.Record, error) {
	return s.readRecord(ctx, "take", s.q.take, key, false)
}

// readRecord runs query, which returns one record's columns for key or no
// row (Get and Take). A read is retried on a broken connection; a take
// only if it surely did not run or the record is still there.
func (s *Store) readRecord(ctx context.Context, name, query string, key session.Key, read bool) (session.Record, error) {
	op := name + " " + key.Short()
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return session.Record{}, err
	}
	defer cancel()
	if !storable(string(key)) {
		return session.Record{}, notFound(op)
	}
	var r session.Record
	var v int64
	try := func() error { return s.pool.QueryRow(octx, query, string(key)).Scan(&r.Data, &v, &r.Subject, &r.SID) }
	if read {
		err = s.retry(ctx, try)
	} else {
		start := time.Now()
		err = try()
		if s.lostConn(ctx, err, start) && !pgconn.SafeToRetry(err) {
			// The DELETE may have run and its reply been lost. If the
			// record is still there it did not; otherwise nobody can tell
			// who took it, and the honest answer is the outage.
			var live bool
			if xerr := s.retry(ctx, func() error { return s.pool.QueryRow(octx, s.q.exists, string(key)).Scan(&live) }); xerr != nil {
				return session.Record{}, s.fail(ctx, op, xerr)
			}
			if !live {
				return session.Record{}, s.fail(ctx, op, fmt.Errorf("connection lost during the take: %w", err))
			}
		}
		if s.lostConn(ctx, err, start) {
			err = try()
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return session.Record{}, notFound(op)
	}
	if err != nil {
		return session.Record{}, s.fail(ctx, op, err)
	}
	r.Version = uint64(v)
	return r, nil
}

// Delete removes the record under key, live or expired; a missing record is
// not an error.
func (s *Store) Delete(ctx context.Context, key session.Key) error {
	op := "delete " + key.Short()
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	if !storable(string(key)) {
		return nil
	}
	if err := s.retry(ctx, func() error {
		_, err := s.pool.Exec(octx, s.q.del, string(key))
		return err
	}); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// DeleteBy removes the live session records (non-empty Subject) matching
// sub and sid, through the partial indexes, and returns how many it removed.
func (s *Store) DeleteBy(ctx context.Context, sub, sid string) ([]session.Key, error) {
	const op = "delete by"
	if sub == "" && sid == "" {
		return nil, fmt.Errorf("postgres: %s: %w", op, session.ErrEmptySelector)
	}
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if !storable(sub) || !storable(sid) {
		return nil, nil // no stored record can have it
	}
	query, args := s.q.delBySubAndSID, []any{sub, sid}
	switch {
	case sid == "":
		query, args = s.q.delBySub, []any{sub}
	case sub == "":
		query, args = s.q.delBySID, []any{sid}
	}
	// Idempotent; a retry does not report what a lost first try deleted.
	var keys []session.Key
	err = s.retry(ctx, func() error {
		rows, err := s.pool.Query(octx, query, args...)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (session.Key, error) {
			var k session.Key
			return k, row.Scan(&k, nil) // the second column is pg_notify's void
		})
		return err
	})
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return keys, nil
}

// ListBySubject returns sub's live sessions; none for an empty sub, which
// would otherwise mean every record that is not a session.
func (s *Store) ListBySubject(ctx context.Context, sub string) (map[session.Key]session.Record, error) {
	const op = "list by subject"
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := map[session.Key]session.Record{}
	if sub == "" || !storable(sub) {
		return out, nil
	}
	err = s.retry(ctx, func() error {
		clear(out)
		rows, err := s.pool.Query(octx, s.q.list, sub)
		if err != nil {
			return err
		}
		var (
			key string
			r   = session.Record{Subject: sub}
			v   int64
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &r.Data, &v, &r.SID}, func() error {
			r.Version = uint64(v)
			out[session.Key(key)] = r // Scan allocates a fresh Data each row
			return nil
		})
		return err
	})
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}

// Ping reports whether the database answers and the table is ready, for
// /readyz. While the store is not ready it also retries the schema, so
// readiness probes drive recovery.
func (s *Store) Ping(ctx context.Context) error {
	const op = "ping"
	octx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.retry(ctx, func() error { return s.pool.Ping(octx) }); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// Close stops the background goroutine, waits for it and closes the pool.
// It is idempotent; afterwards every call returns ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
		s.pool.Close()
	})
	return nil
}

// shutdown releases what Open made before the loop was started.
func (s *Store) shutdown() {
	s.closed.Store(true)
	s.cancel()
	s.pool.Close()
}

// begin checks ctx and the store's state, bounds the call with the store's
// timeout and makes sure the schema is ready.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if s.closed.Load() {
		return nil, nil, closedError(op)
	}
	octx, cancel := context.WithTimeout(ctx, s.timeout)
	if err := s.ensureSchema(octx); err != nil {
		cancel()
		return nil, nil, s.fail(ctx, op, err)
	}
	return octx, cancel, nil
}

// lostConn reports whether err, from a statement started at start, means
// its connection broke (EOF, reset, the server shutting the session down)
// rather than the database answering or the deadline passing: the one case
// where a second try may succeed. It then resets the pool, unless that was
// done since start: when one connection breaks under a restart or a
// failover, its idle siblings are broken too, and the pool would hand them
// out one by one.
func (s *Store) lostConn(ctx context.Context, err error, start time.Time) bool {
	if err == nil || ctx.Err() != nil || s.closed.Load() || errors.Is(err, pgx.ErrNoRows) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02": // admin_shutdown, crash_shutdown
		default:
			return false // the database answered
		}
	}
	s.resetMu.Lock()
	if s.resetAt.Before(start) {
		s.pool.Reset()
		s.resetAt = time.Now()
	}
	s.resetMu.Unlock()
	return true
}

// retry runs an idempotent statement and, if its connection broke, once
// more on a fresh one.
func (s *Store) retry(ctx context.Context, try func() error) error {
	start := time.Now()
	err := try()
	if s.lostConn(ctx, err, start) {
		err = try()
	}
	return err
}

// fail turns a backend error into the Store contract's: the caller's own
// context error when it gave up, ErrUnavailable for anything the database
// (or the way to it) did wrong. The cause is kept as text only, so that our
// own timeout does not look like the caller's context expiring.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("postgres: %s: %w", op, cerr)
	}
	if s.closed.Load() || errors.Is(err, errClosed) {
		return closedError(op)
	}
	s.noteError(err)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22") {
		// A data exception: the database answered and refused the value.
		// That is no outage, and retrying will not help.
		return fmt.Errorf("postgres: %s: the database refused the value: %s (SQLSTATE %s)", op, pgErr.Message, pgErr.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: no answer within %v: %w", op, s.timeout, session.ErrUnavailable)
	}
	return fmt.Errorf("postgres: %s: %w: %v", op, session.ErrUnavailable, err)
}

// noteError forgets that the schema is ready when the table or its schema
// has disappeared (a restore, a careless DBA), so the next call recreates it.
func (s *Store) noteError(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") { // undefined_table, invalid_schema_name
		if s.ready.CompareAndSwap(true, false) {
			s.log.Warn("session table is gone; recreating it", "table", s.name)
		}
	}
}

func closedError(op string) error {
	return fmt.Errorf("postgres: %s: store is closed: %w", op, session.ErrUnavailable)
}

func notFound(op string) error { return fmt.Errorf("postgres: %s: %w", op, session.ErrNotFound) }

// checkWrite rejects what the table cannot hold faithfully: a ttl that is
// not positive, and text columns that PostgreSQL's text type cannot store.
func checkWrite(op string, key session.Key, r session.Record, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("postgres: %s: ttl %v is not positive", op, ttl)
	}
	for _, f := range []struct{ name, v string }{{"key", string(key)}, {"subject", r.Subject}, {"sid", r.SID}} {
		if !storable(f.v) {
			return fmt.Errorf("postgres: %s: %s is not valid UTF-8 without NUL bytes, which a text column needs", op, f.name)
		}
	}
	return nil
}

// storable reports whether PostgreSQL's text type can hold v unchanged.
func storable(v string) bool { return utf8.ValidString(v) && strings.IndexByte(v, 0) < 0 }

// data returns r.Data for the NOT NULL bytea column: pgx sends a nil slice
// as NULL.
func data(r session.Record) []byte {
	if r.Data == nil {
		return []byte{}
	}
	return r.Data
}

// micros is ttl in whole microseconds, the resolution of timestamptz,
// rounded up so that a positive ttl never becomes zero.
func micros(ttl time.Duration) int64 {
	us := int64(ttl / time.Microsecond)
	if ttl%time.Microsecond != 0 {
		us++
	}
	return us
}

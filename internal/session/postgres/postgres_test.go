package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/tcprelay"
)

// TestStore runs the conformance suite against the real database, with the
// default sweep interval (expiry relies on the filters of every query), with
// a sweeper fast enough to delete records while the suite uses them, and
// with the simple query protocol that PgBouncer's transaction mode needs.
// Each variant has its own schema; every subtest opens its own Store on it,
// as replicas do.
func TestStore(t *testing.T) {
	testURL(t)
	for _, tc := range []struct {
		name     string
		interval time.Duration
		params   []string
	}{
		{"LazyExpiry", 0, nil},
		{"FastSweep", 50 * time.Millisecond, nil},
		{"SimpleProtocol", 0, []string{"default_query_exec_mode", "simple_protocol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			schema := freshSchema(t)
			storetest.Run(t, func(t *testing.T) session.Store {
				return openStore(t, schema, Options{SweepInterval: tc.interval}, tc.params...)
			})
		})
	}
}

func BenchmarkStore(b *testing.B) {
	s := openStore(b, freshSchema(b), Options{Logger: slog.New(slog.DiscardHandler)})
	storetest.RunBenchmarks(b, s)
}

// TestConcurrentOpen starts eight replicas at once on a schema that does not
// exist yet: all must start, and exactly one must create the schema.
func TestConcurrentOpen(t *testing.T) {
	base := testURL(t)
	schema := schemaName(t)
	const replicas = 8
	var rec logRecorder
	log := testLogger(t, &rec)
	raw := withParams(t, base, "schema", schema, "timeout", "10s")

	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-gate
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stores[i], errs[i] = Open(ctx, raw, Options{Logger: log})
		})
	}
	close(gate)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Errorf("replica %d: Open: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, s := range stores {
		if !s.ready.Load() {
			t.Errorf("a replica is not ready after Open returned")
		}
	}
	if n := rec.count(slog.LevelInfo, "session table migrated"); n != 1 {
		t.Errorf("%d replicas migrated the table, want exactly 1; log:\n%s", n, strings.Join(rec.all(), "\n"))
	}

	conn := adminConn(t)
	for _, c := range []struct {
		what string
		sql  string
		want int64
	}{
		{"tables", `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, 1},
		{"session tables", `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'moat_sessions'`, 1},
		{"sequences", `SELECT count(*) FROM pg_sequences WHERE schemaname = $1 AND sequencename = 'moat_sessions_version_seq'`, 1},
		{"indexes", `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'moat_sessions'`, 4},
		{"partial indexes", `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexdef LIKE '%WHERE%<>%'`, 2},
	} {
		if got := queryInt(t, conn, c.sql, schema); got != c.want {
			t.Errorf("%s in %s: %d, want %d", c.what, schema, got, c.want)
		}
	}
	var comment string
	if err := conn.QueryRow(t.Context(), `SELECT obj_description(to_regclass($1), 'pg_class')`, schema+".moat_sessions").Scan(&comment); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s%d ", commentPrefix, len(migrations)); !strings.HasPrefix(comment, want) {
		t.Errorf("table comment %q, want it to start with %q", comment, want)
	}

	// The replicas share the table and the version sequence.
	k := session.NewID().Key()
	seen := map[uint64]bool{}
	for i, s := range stores {
		v, err := s.Set(t.Context(), k, session.Record{Data: fmt.Appendf(nil, "replica %d", i)}, time.Minute)
		if err != nil {
			t.Fatalf("replica %d: Set: %v", i, err)
		}
		if seen[v] {
			t.Fatalf("replica %d: version %d handed out twice", i, v)
		}
		seen[v] = true
		r, err := stores[(i+1)%replicas].Get(t.Context(), k)
		if err != nil || r.Version != v {
			t.Fatalf("replica %d's write read by another: version %d, %v; want %d", i, r.Version, err, v)
		}
	}

	// A later start finds the table current and runs no DDL.
	openStore(t, schema, Options{Logger: log})
	if n := rec.count(slog.LevelInfo, "session table migrated"); n != 1 {
		t.Errorf("reopening migrated again (%d migrations)", n)
	}
}

// TestSweep fills the table with expired rows, more than one batch, and
// checks that sweepers on three replicas delete them, and only them,
// without errors.
func TestSweep(t *testing.T) {
	schema := freshSchema(t)
	var rec logRecorder
	log := testLogger(t, &rec)
	s := openStore(t, schema, Options{Logger: log, SweepInterval: time.Hour})
	live := session.NewID().Key()
	if _, err := s.Set(t.Context(), live, session.Record{Data: []byte("live"), Subject: "alice"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	conn := adminConn(t)
	table := pgx.Identifier{schema, "moat_sessions"}.Sanitize()
	const expired = 2*sweepBatch + 500
	exec(t, conn, `INSERT INTO `+table+` (key, data, version, subject, sid, expires_at)
		SELECT 'expired-' || g, '\x00ff', nextval('`+schema+`.moat_sessions_version_seq'), 'bob', 'sid-' || g,
			now() - interval '1 second' * g
		FROM generate_series(1, $1) g`, expired)

	// Expired rows are invisible long before they are swept.
	if _, err := s.Get(t.Context(), "expired-1"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get(expired row) = %v, want ErrNotFound", err)
	}
	if m, err := s.ListBySubject(t.Context(), "bob"); err != nil || len(m) != 0 {
		t.Fatalf("ListBySubject(bob) = %d records, %v; want none", len(m), err)
	}

	for range 3 {
		openStore(t, schema, Options{Logger: log, SweepInterval: 20 * time.Millisecond})
	}
	count := func() int64 { return queryInt(t, conn, `SELECT count(*) FROM `+table) }
	deadline := time.Now().Add(15 * time.Second)
	for n := count(); n != 1; n = count() {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows left 15s after the sweepers started, want 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r, err := s.Get(t.Context(), live); err != nil || string(r.Data) != "live" {
		t.Fatalf("live record after the sweep: %q, %v", r.Data, err)
	}
	if n := rec.count(slog.LevelWarn, ""); n != 0 {
		t.Errorf("%d warnings while sweeping:\n%s", n, strings.Join(rec.all(), "\n"))
	}
}

// TestExpiryUsesDatabaseClock checks that expires_at is computed by the
// server, from its now(), so replicas with skewed clocks agree.
func TestExpiryUsesDatabaseClock(t *testing.T) {
	schema := freshSchema(t)
	s := openStore(t, schema, Options{})
	k := session.NewID().Key()
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	conn := adminConn(t)
	ms := queryInt(t, conn, `SELECT (extract(epoch FROM expires_at - now()) * 1000)::bigint FROM `+
		pgx.Identifier{schema, "moat_sessions"}.Sanitize()+` WHERE key = $1`, string(k))
	if got := time.Duration(ms) * time.Millisecond; got > time.Hour || got < time.Hour-10*time.Second {
		t.Fatalf("expires_at - now() = %v in the database, want just under 1h", got)
	}
}

// TestOutage points a store at a port where nothing listens: Open still
// succeeds (moat starts and reports not-ready), and calls fail fast with
// ErrUnavailable, without the password in any error.
func TestOutage(t *testing.T) {
	const password = "outage-secret-pw"
	var rec logRecorder
	begin := time.Now()
	s, err := Open(t.Context(), "postgres://moat:"+password+"@127.0.0.1:1/test?sslmode=disable", Options{Logger: testLogger(t, &rec)})
	if err != nil {
		t.Fatalf("Open with the database down: %v (want a store that is not ready)", err)
	}
	t.Cleanup(func() { s.Close() })
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Open took %v with the database down", d)
	}
	if rec.count(slog.LevelWarn, "unreachable") != 1 {
		t.Errorf("Open did not warn that the database is unreachable; log:\n%s", strings.Join(rec.all(), "\n"))
	}
	k := session.NewID().Key()
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, k); return err }},
		{"Set", func(ctx context.Context) error {
			_, err := s.Set(ctx, k, session.Record{Data: []byte("x")}, time.Minute)
			return err
		}},
		{"CompareAndSwap", func(ctx context.Context) error {
			_, err := s.CompareAndSwap(ctx, k, 0, session.Record{Data: []byte("x")}, time.Minute)
			return err
		}},
		{"Take", func(ctx context.Context) error { _, err := s.Take(ctx, k); return err }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, k) }},
		{"DeleteBy", func(ctx context.Context) error { _, err := s.DeleteBy(ctx, "alice", ""); return err }},
		{"ListBySubject", func(ctx context.Context) error { _, err := s.ListBySubject(ctx, "alice"); return err }},
		{"Ping", s.Ping},
	}
	for _, c := range calls {
		begin := time.Now()
		err := c.call(t.Context())
		if d := time.Since(begin); d > 3*time.Second {
			t.Errorf("%s took %v with the database down", c.name, d)
		}
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s = %v, want ErrUnavailable", c.name, err)
		} else if strings.Contains(err.Error(), password) {
			t.Errorf("%s error contains the password: %v", c.name, err)
		}
	}
	for _, m := range rec.all() {
		if strings.Contains(m, password) {
			t.Errorf("log contains the password: %s", m)
		}
	}
}

// TestOwnTimeoutIsNotCallersDeadline uses a server that accepts connections
// and never answers: the store's own timeout yields ErrUnavailable, not a
// context error (moat would take it for a client gone), while the caller's
// deadline yields the caller's context error.
func TestOwnTimeoutIsNotCallersDeadline(t *testing.T) {
	silent, err := tcprelay.NewSilent()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	s, err := Open(t.Context(), withParams(t, "postgres://moat@"+silent.Addr()+"/test?sslmode=disable", "timeout", "300ms"), Options{Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	begin := time.Now()
	_, err = s.Get(context.Background(), session.NewID().Key())
	if !errors.Is(err, session.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get against a silent server = %v; want ErrUnavailable and no context error", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Get took %v with timeout=300ms", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Get(ctx, session.NewID().Key())
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Get past the caller's deadline = %v; want context.DeadlineExceeded only", err)
	}
}

// TestRecovery takes the database away and gives it back, at startup and
// while running: the store must come back by itself, creating its table
// once the database answers.
func TestRecovery(t *testing.T) {
	schema := schemaName(t)
	relayed, p := tcprelay.Via(t, testURL(t))
	p.Refuse()
	s, err := Open(t.Context(), withParams(t, relayed, "schema", schema, "timeout", "5s"), Options{Logger: testLogger(t, nil), SweepInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open with the database down: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ping(t.Context()); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Ping with the database down = %v, want ErrUnavailable", err)
	}

	// waitReady polls Ping as /readyz does.
	waitReady := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := s.Ping(t.Context())
			if err == nil {
				return
			}
			if !errors.Is(err, session.ErrUnavailable) {
				t.Fatalf("Ping = %v, want nil or ErrUnavailable", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready 10s after the database came back: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p.Accept()
	waitReady()
	k := session.NewID().Key()
	v, err := s.Set(t.Context(), k, session.Record{Data: []byte("after recovery")}, time.Minute)
	if err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}

	// The database goes away under a running store: its pooled connections
	// break and calls fail fast.
	p.Refuse()
	p.Cut()
	begin := time.Now()
	if _, err := s.Get(t.Context(), k); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Get during the outage = %v, want ErrUnavailable", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Get took %v during the outage", d)
	}

	p.Accept()
	waitReady()
	r, err := s.Get(t.Context(), k)
	if err != nil || r.Version != v || string(r.Data) != "after recovery" {
		t.Fatalf("Get after the second recovery = %q v%d, %v; want the record written before", r.Data, r.Version, err)
	}
}

// TestTableDropped checks that a store whose table disappears recreates it
// rather than failing until restarted.
func TestTableDropped(t *testing.T) {
	schema := freshSchema(t)
	s := openStore(t, schema, Options{})
	k := session.NewID().Key()
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	exec(t, adminConn(t), `DROP TABLE `+pgx.Identifier{schema, "moat_sessions"}.Sanitize())
	// The first call may fail; it must not be anything but ErrUnavailable.
	if _, err := s.Get(t.Context(), k); err != nil && !errors.Is(err, session.ErrUnavailable) && !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after DROP TABLE = %v", err)
	}
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("y")}, time.Minute); err != nil {
		t.Fatalf("Set after the table was recreated: %v", err)
	}
	if r, err := s.Get(t.Context(), k); err != nil || string(r.Data) != "y" {
		t.Fatalf("Get = %q, %v", r.Data, err)
	}
}

// TestOpenFailsWhenRefused: a database that answers but refuses (no such
// database, no right to create the table) is a configuration error that
// Open reports at once, rather than a store that is never ready.
func TestOpenFailsWhenRefused(t *testing.T) {
	base := testURL(t)
	conn := adminConn(t)

	t.Run("no such database", func(t *testing.T) {
		u := strings.Replace(base, "/"+conn.Config().Database+"?", "/moat_no_such_database?", 1)
		if u == base {
			t.Skipf("cannot rewrite the database name in %s", envURL)
		}
		_, err := Open(t.Context(), u, Options{})
		if err == nil || !strings.Contains(err.Error(), "moat_no_such_database") {
			t.Fatalf("Open = %v, want an error naming the missing database", err)
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		role := "moat_test_" + strings.ToLower(strings.TrimPrefix(schemaName(t), "moat_test_"))
		exec(t, conn, `CREATE ROLE `+role+` LOGIN`)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn.Exec(ctx, `DROP ROLE IF EXISTS `+role) // after the schema cleanup, which runs first
		})
		schema := freshSchema(t)
		exec(t, conn, `GRANT USAGE ON SCHEMA `+schema+` TO `+role)
		u := withParams(t, base, "schema", schema, "timeout", "10s")
		parsed, err := pgx.ParseConfig(u)
		if err != nil {
			t.Fatal(err)
		}
		roleURL := strings.Replace(u, "//"+parsed.User+"@", "//"+role+"@", 1)
		if roleURL == u {
			t.Skipf("cannot rewrite the user name in %s", envURL)
		}

		// No CREATE right on the schema: Open must say so.
		_, err = Open(t.Context(), roleURL, Options{})
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("Open without CREATE rights = %v, want permission denied", err)
		}

		// A DBA migrates and grants DML only: the role then runs no DDL.
		openStore(t, schema, Options{})
		exec(t, conn, `GRANT SELECT, INSERT, UPDATE, DELETE ON `+schema+`.moat_sessions TO `+role)
		exec(t, conn, `GRANT USAGE ON SEQUENCE `+schema+`.moat_sessions_version_seq TO `+role)
		s, err := Open(t.Context(), roleURL, Options{Logger: testLogger(t, nil)})
		if err != nil {
			t.Fatalf("Open with DML rights on a migrated table: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		k := session.NewID().Key()
		if _, err := s.CompareAndSwap(t.Context(), k, 0, session.Record{Data: []byte("x"), Subject: "a"}, time.Minute); err != nil {
			t.Fatalf("CompareAndSwap as the restricted role: %v", err)
		}
		if _, err := s.Take(t.Context(), k); err != nil {
			t.Fatalf("Take as the restricted role: %v", err)
		}
	})
}

// TestUnstorableText: PostgreSQL's text type cannot hold NUL bytes or
// invalid UTF-8. Writes say so plainly (not ErrUnavailable: retrying will
// not help); reads and deletes by such values find nothing.
func TestUnstorableText(t *testing.T) {
	s := openStore(t, freshSchema(t), Options{})
	ctx := t.Context()
	k := session.NewID().Key()
	for _, r := range []session.Record{
		{Data: []byte("x"), Subject: "a\x00b"},
		{Data: []byte("x"), Subject: "a", SID: "\xff"},
	} {
		if _, err := s.Set(ctx, k, r, time.Minute); err == nil || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("Set(subject %q, sid %q) = %v; want a plain error", r.Subject, r.SID, err)
		}
		if _, err := s.CompareAndSwap(ctx, k, 0, r, time.Minute); err == nil || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("CompareAndSwap(subject %q, sid %q) = %v; want a plain error", r.Subject, r.SID, err)
		}
	}
	bad := session.Key("k\x00")
	if _, err := s.Get(ctx, bad); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get(key with NUL) = %v, want ErrNotFound", err)
	}
	if _, err := s.Take(ctx, bad); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Take(key with NUL) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, bad); err != nil {
		t.Errorf("Delete(key with NUL) = %v, want nil", err)
	}
	if n, err := storetest.Count(s.DeleteBy(ctx, "\xff", "")); n != 0 || err != nil {
		t.Errorf("DeleteBy(invalid UTF-8) = %d, %v; want 0, nil", n, err)
	}
	if m, err := s.ListBySubject(ctx, "a\x00"); len(m) != 0 || err != nil {
		t.Errorf("ListBySubject(NUL) = %d, %v; want none", len(m), err)
	}
}

// TestClose checks that Close is idempotent and safe from many goroutines,
// stops the background goroutine and makes every call ErrUnavailable.
func TestClose(t *testing.T) {
	s := openStore(t, freshSchema(t), Options{SweepInterval: 10 * time.Millisecond})
	k := session.NewID().Key()
	if _, err := s.Set(t.Context(), k, session.Record{Data: []byte("x")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a few sweeps
	storetest.CheckClose(t, s)
	select {
	case <-s.done:
	default:
		t.Fatal("the background goroutine is still running after Close")
	}
}

// TestCloseLeaksNoGoroutine runs a store that is retrying an unreachable
// database inside a synctest bubble, which fails the test if any goroutine
// the store started (its loop, the pool's) outlives Close.
func TestCloseLeaksNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(t.Context(), "postgres://moat@127.0.0.1:1/test?sslmode=disable", Options{SweepInterval: time.Second})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		time.Sleep(10 * time.Second) // several retries
		storetest.CheckClose(t, s)
	})
}

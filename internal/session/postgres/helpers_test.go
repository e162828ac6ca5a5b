package postgres

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// envURL names the database the tests use. Without it the tests that need
// PostgreSQL skip; with it they run, and fail if the database is down.
const envURL = "MOAT_TEST_POSTGRES_URL"

// testURL returns the test database's URL or skips tb.
func testURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(envURL)
	if u == "" {
		tb.Skipf("needs PostgreSQL: set %s, e.g. %s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'", envURL, envURL)
	}
	return u
}

// withParams returns raw with the query parameters kv (name, value, ...)
// set.
func withParams(tb testing.TB, raw string, kv ...string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("%s is not a URL: %v", envURL, err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// adminConn returns a plain connection to the test database, for setting
// up and inspecting what the store does. It fails tb, never skips, when the
// database cannot be reached.
func adminConn(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testURL(tb))
	if err != nil {
		tb.Fatalf("cannot reach the PostgreSQL named by %s: %v", envURL, err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// exec runs sql on conn, failing tb on error.
func exec(tb testing.TB, conn *pgx.Conn, sql string, args ...any) pgconn.CommandTag {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return tag
}

// queryInt returns the single integer that sql selects.
func queryInt(tb testing.TB, conn *pgx.Conn, sql string, args ...any) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// schemaName returns a random schema name that is dropped, with all it
// holds, when tb ends. The schema itself is not created.
func schemaName(tb testing.TB) string {
	tb.Helper()
	name := "moat_test_" + strings.ToLower(rand.Text())
	conn := adminConn(tb)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("dropping test schema %s: %v", name, err)
		}
	})
	return name
}

// freshSchema creates an empty schema for tb, dropped when tb ends, so that
// parallel tests and other packages never see each other's tables.
func freshSchema(tb testing.TB) string {
	tb.Helper()
	name := schemaName(tb)
	exec(tb, adminConn(tb), `CREATE SCHEMA `+pgx.Identifier{name}.Sanitize())
	return name
}

// openStore opens a store on the test database in schema, closed when tb
// ends. kv are further URL parameters. The timeout is 10s rather than the
// default 1s: these tests are about correctness, and a machine busy with
// parallel test packages can be slow; the outage tests set their own.
func openStore(tb testing.TB, schema string, o Options, kv ...string) *Store {
	tb.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(tb, nil)
	}
	raw := withParams(tb, testURL(tb), append([]string{"schema", schema, "timeout", "10s"}, kv...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, raw, o)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// logRecorder is a slog.Handler that writes to the test log and remembers
// every message, so tests can count migrations and sweep failures.
type logRecorder struct {
	out slog.Handler
	mu  sync.Mutex
	log []slog.Record
}

func testLogger(tb testing.TB, rec *logRecorder) *slog.Logger {
	h := slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})
	if rec == nil {
		return slog.New(h)
	}
	rec.out = h
	return slog.New(rec)
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.log = append(r.log, rec.Clone())
	r.mu.Unlock()
	return r.out.Handle(ctx, rec)
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count returns how many messages at level or above contain msg.
func (r *logRecorder) count(level slog.Level, msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.log {
		if rec.Level >= level && strings.Contains(rec.Message, msg) {
			n++
		}
	}
	return n
}

// all returns every message, for failure reports.
func (r *logRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.log))
	for _, rec := range r.log {
		out = append(out, rec.Level.String()+" "+rec.Message)
	}
	return out
}

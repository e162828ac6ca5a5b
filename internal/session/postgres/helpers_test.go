package postgres

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Modes of a testProxy.
const (
	refuse  int32 = iota // accept and close at once, as a database that is down
	forward              // pass traffic to the upstream database
	hang                 // accept and never answer, as a dead host behind a firewall
)

// testProxy is a TCP proxy on the loopback interface that the tests turn
// off and on, to take the database away from a store and give it back.
type testProxy struct {
	tb       testing.TB
	ln       net.Listener
	upstream string
	mode     atomic.Int32

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startProxy listens on a free loopback port; upstream may be empty when
// the proxy never forwards.
func startProxy(tb testing.TB, upstream string, mode int32) *testProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	p := &testProxy{tb: tb, ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.mode.Store(mode)
	p.wg.Go(p.serve)
	tb.Cleanup(func() {
		ln.Close()
		p.dropAll()
		p.wg.Wait()
	})
	return p
}

// url returns a URL that reaches the proxy, with the password and database
// of the test database when there is one.
func (p *testProxy) url(base string, kv ...string) string {
	u, err := url.Parse(base)
	if err != nil {
		p.tb.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return withParams(p.tb, u.String(), kv...)
}

// set switches the mode; leaving forward cuts every open connection.
func (p *testProxy) set(mode int32) {
	p.mode.Store(mode)
	if mode != forward {
		p.dropAll()
	}
}

func (p *testProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *testProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *testProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		switch p.mode.Load() {
		case refuse:
			c.Close()
		case hang:
			p.track(c)
		case forward:
			up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.track(c, up)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			p.wg.Go(func() { pipe(up, c) })
			p.wg.Go(func() { pipe(c, up) })
		}
	}
}

// upstreamAddr is host:port of the test database.
func upstreamAddr(tb testing.TB) string {
	tb.Helper()
	cfg, err := pgconn.ParseConfig(testURL(tb))
	if err != nil {
		tb.Fatalf("%s: %v", envURL, err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		tb.Skipf("%s names a Unix socket; the proxy tests need TCP", envURL)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

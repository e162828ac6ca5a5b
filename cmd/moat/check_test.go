package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/session/bolt"
)

// storeConfig is a loopback moat config on store with key.
func storeConfig(t *testing.T, issuer, store, key string) string {
	return writeFile(t, fmt.Sprintf(`
public_url: "http://127.0.0.1:4001"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
session: {store: %q, keys: [%q]}
`, issuer, store, key))
}

func fileSum(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// loginOnce creates one session in the store sealed with key, as serve
// does at a login (which also writes the key-check marker).
func loginOnce(t *testing.T, store, key string) {
	t.Helper()
	ctx := context.Background()
	s, err := backend.Open(ctx, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, _ := session.ParseKey(key)
	c, _ := session.NewCodec(k)
	m := session.NewManager(session.ManagerOptions{Store: s, Codec: c, IdleTimeout: time.Hour, AbsoluteTimeout: 2 * time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if _, err := m.Create(ctx, httptest.NewRecorder(), session.Session{Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
}

// moat check on bolt changes nothing: a missing file stays missing, an
// existing one keeps its bytes, a file a running moat holds is skipped with
// a note instead of failing after a lock timeout, a throwaway key does not
// lock a fresh store, and wrong keys over live sessions are reported with
// the way out.
func TestCheckIsReadOnlyOnBolt(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.db")
	store := "bolt://" + path
	key := session.NewKey()

	out, stderr, err := runCLI("check", "--config", storeConfig(t, op.Issuer, store, key))
	if err != nil || !strings.Contains(out, "note: session.store: bolt: "+path+" does not exist yet") || !strings.HasSuffix(out, ": OK\n") {
		t.Fatalf("missing file: %v\n%s%s", err, out, stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("check created the bolt file: %v", err)
	}
	missingDir := "bolt://" + filepath.Join(dir, "nope", "sessions.db")
	if out, stderr, err := runCLI("check", "--config", storeConfig(t, op.Issuer, missingDir, key)); err != nil || !strings.Contains(out, "StateDirectory=") {
		t.Fatalf("missing directory: %v\n%s%s", err, out, stderr)
	}

	// A store a throwaway key was used on, without a login: any key runs.
	s, err := bolt.Open(context.Background(), store, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := fileSum(t, path)
	for range 2 {
		if out, stderr, err := runCLI("check", "--config", storeConfig(t, op.Issuer, store, session.NewKey())); err != nil || strings.Contains(out, "note:") {
			t.Fatalf("check on an existing file: %v\n%s%s", err, out, stderr)
		}
	}
	if fileSum(t, path) != before {
		t.Fatal("check changed the bolt file")
	}

	// A running moat holds the file: a note, not a failure, and quickly.
	held, err := bolt.Open(context.Background(), store, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, stderr, err = runCLI("check", "--config", storeConfig(t, op.Issuer, store, key))
	if err != nil || !strings.Contains(out, "is in use by a running moat") || !strings.HasSuffix(out, ": OK\n") || time.Since(start) > 5*time.Second {
		t.Fatalf("file held: %v after %v\n%s%s", err, time.Since(start), out, stderr)
	}
	held.Close()

	// Live sessions sealed with key: another key is refused, and told how
	// to recover if they need not be kept.
	loginOnce(t, store, key)
	other := storeConfig(t, op.Issuer, store, session.NewKey())
	before = fileSum(t, path)
	_, stderr, err = runCLI("check", "--config", other)
	if err == nil || !strings.Contains(stderr, "  - session.keys: none of the configured keys opens the sessions in "+store) ||
		!strings.Contains(stderr, "moat reset-key-check --config FILE") {
		t.Fatalf("wrong key: %v\n%s", err, stderr)
	}
	if fileSum(t, path) != before {
		t.Fatal("check changed the bolt file")
	}
	if out, stderr, err := runCLI("check", "--config", storeConfig(t, op.Issuer, store, key)); err != nil {
		t.Fatalf("right key: %v\n%s%s", err, out, stderr)
	}
	if fileSum(t, path) != before {
		t.Fatal("check with the right key changed the bolt file")
	}
	if out, stderr, err := runCLI("reset-key-check", "--config", other); err != nil || !strings.Contains(out, "key-check marker removed") {
		t.Fatalf("reset-key-check: %v\n%s%s", err, out, stderr)
	}
	if out, stderr, err := runCLI("check", "--config", other); err != nil {
		t.Fatalf("after reset-key-check: %v\n%s%s", err, out, stderr)
	}
}

// moat check on PostgreSQL creates no schema and no table (a mistyped
// schema= is reported, not created); moat migrate creates them.
func TestCheckIsReadOnlyOnPostgres(t *testing.T) {
	base := os.Getenv("MOAT_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("set MOAT_TEST_POSTGRES_URL")
	}
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	schema := "moat_chk_" + strings.ToLower(rand.Text()[:10])
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("schema", schema)
	u.RawQuery = q.Encode()
	store := u.String()
	conn, err := pgx.Connect(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	schemaExists := func() bool {
		var ok bool
		if err := conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	cfg := storeConfig(t, op.Issuer, store, session.NewKey())
	out, stderr, err := runCLI("check", "--config", cfg)
	if err != nil || !strings.Contains(out, fmt.Sprintf("note: session.store: postgres: preparing table %s.moat_sessions: schema %q does not exist (is schema= spelt right?", schema, schema)) {
		t.Fatalf("check without schema: %v\n%s%s", err, out, stderr)
	}
	if schemaExists() {
		t.Fatal("moat check created the schema")
	}
	if out, stderr, err := runCLI("migrate", "--config", cfg); err != nil || !strings.Contains(out, "session store ready") {
		t.Fatalf("migrate: %v\n%s%s", err, out, stderr)
	}
	if !schemaExists() {
		t.Fatal("moat migrate did not create the schema")
	}
	if out, stderr, err := runCLI("check", "--config", cfg); err != nil || strings.Contains(out, "note:") {
		t.Fatalf("check after migrate: %v\n%s%s", err, out, stderr)
	}
	var rows int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+schema+".moat_sessions").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("rows after check: %d, %v", rows, err)
	}
}

// moat check on Redis writes no key.
func TestCheckIsReadOnlyOnRedis(t *testing.T) {
	base := os.Getenv("MOAT_TEST_REDIS_URL")
	if base == "" {
		t.Skip("set MOAT_TEST_REDIS_URL")
	}
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	prefix := "moatchk" + strings.ToLower(rand.Text()[:10]) + ":"
	store := base + "?prefix=" + prefix
	if out, stderr, err := runCLI("check", "--config", storeConfig(t, op.Issuer, store, session.NewKey())); err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, stderr)
	}
	u, _ := url.Parse(base)
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = "0"
	}
	fmt.Fprintf(c, "SELECT %s\r\nKEYS %s*\r\n", db, prefix)
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != "+OK\r\n" {
		t.Fatalf("SELECT: %q", line)
	}
	if line, _ := r.ReadString('\n'); line != "*0\r\n" {
		t.Fatalf("moat check wrote keys under %s: %q", prefix, line)
	}
}

// moat check with frontends checks each frontend's IdP and prints, per
// frontend, what to register; a frontend whose discovery fails is named.
func TestCheckFrontends(t *testing.T) {
	opA := oidctest.New(t, "http://localhost:4001/auth/callback")
	opB := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	config := func(issuerB string) string {
		return fmt.Sprintf(`
frontends:
  - name: shop
    public_url: "http://localhost:4001"
    oidc: {issuer: %q, client_id: "shop-bff", client_secret: "s"}
  - name: staff
    public_url: "http://127.0.0.1:4001"
    oidc: {issuer: %q, client_id: "staff-bff", client_secret: "s", post_logout_redirect_url: "http://127.0.0.1:4001/bye"}
`, opA.Issuer, issuerB)
	}
	// checked runs moat check on body and wants each of wants in its output.
	checked := func(body string, wants ...string) {
		t.Helper()
		out, stderr, err := runCLI("check", "--config", writeFile(t, body))
		if err != nil {
			t.Fatalf("%v\n%s%s", err, out, stderr)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("check output lacks %q:\n%s", want, out)
			}
		}
	}
	checked(config(opB.Issuer),
		"register at the IdP for client shop-bff (frontend shop):\n  redirect URI:                  http://localhost:4001/auth/callback\n",
		"register at the IdP for client staff-bff (frontend staff):\n  redirect URI:                  http://127.0.0.1:4001/auth/callback\n  post-logout redirect URI:      http://127.0.0.1:4001/bye\n  back-channel logout URI:       http://127.0.0.1:4001/auth/backchannel-logout\n",
	)
	_, stderr, err := runCLI("check", "--config", writeFile(t, config("http://127.0.0.1:1")))
	if err == nil || !strings.Contains(stderr, "frontends[1].oidc.issuer: discovery failed") || strings.Contains(stderr, "frontends[0]") {
		t.Errorf("a frontend's unreachable IdP: %v\n%s", err, stderr)
	}

	// staff mounted at /staff of shop's origin: its URIs carry the path,
	// and the shared origin is warned about.
	checked(strings.ReplaceAll(config(opB.Issuer), "http://127.0.0.1:4001", "http://localhost:4001/staff"),
		"warning: frontends[1].public_url shares the origin http://localhost:4001 with frontends[0]",
		"register at the IdP for client staff-bff (frontend staff):\n  redirect URI:                  http://localhost:4001/staff/auth/callback\n  post-logout redirect URI:      http://localhost:4001/staff/bye\n  back-channel logout URI:       http://localhost:4001/staff/auth/backchannel-logout\n",
	)
}

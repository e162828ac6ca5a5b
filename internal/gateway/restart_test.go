package gateway_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/bolt"
)

func TestBoltSessionsSurviveARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	e := newEnv(t, func(c *config.Config) { c.Session.Store = "bolt://" + path })
	b := e.browser()
	b.login("/")
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("before restart: %s", r.Status)
	}
	e.restart()
	if !loggedIn(t, b) {
		t.Fatal("the session did not survive a restart")
	}
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("API after restart: %s %s", r.Status, r.body)
	}
	// Logout after the restart still ends it for good.
	b.api("POST", "/auth/logout")
	e.restart()
	if loggedIn(t, b) {
		t.Fatal("a logged-out session came back after a restart")
	}
}

// stoppedWithSession starts moat on a bolt store, logs a browser in and
// stops moat, leaving the session in the file at path.
func stoppedWithSession(t *testing.T) (e *env, b *browser, path string) {
	path = filepath.Join(t.TempDir(), "sessions.db")
	e = newEnv(t, func(c *config.Config) { c.Session.Store = "bolt://" + path })
	b = e.browser()
	b.login("/")
	e.stop()
	return e, b, path
}

func TestWrongKeyIsAStartupError(t *testing.T) {
	e, b, _ := stoppedWithSession(t)
	cfg := *e.cfg
	cfg.Session.Keys = []secret.String{secret.String(session.NewKey())}
	_, err := gateway.New(context.Background(), &cfg, e.log, gateway.Options{})
	if err == nil || !strings.Contains(err.Error(), "session.keys: none of the configured keys") {
		t.Fatalf("err = %v", err)
	}
	// With the right key back, the session is still there.
	e.start(listen(t, e.cfg.Listen))
	if !loggedIn(t, b) {
		t.Fatal("the session was lost")
	}
}

// A store that is down when moat starts leaves the key check for later:
// once the store answers, wrong keys make moat unready and every session
// request a 503, never a silent logout of everyone, and nothing is lost for
// the right keys.
func TestWrongKeyFoundOnceTheStoreAnswers(t *testing.T) {
	e, b, path := stoppedWithSession(t)

	bs, err := bolt.Open(context.Background(), "bolt://"+path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := &downStore{Store: bs}
	store.down.Store(true)
	rightKeys := e.cfg.Session.Keys
	e.cfg.Session.Keys = []secret.String{secret.String(session.NewKey())}
	e.opts.Store = store
	e.start(listen(t, e.cfg.Listen)) // starts: the store cannot be asked
	ready := func() (int, string) {
		code, checks := adminReadyz(t, e.gw)
		if r := b.get("/readyz"); r.StatusCode != code {
			t.Errorf("public readyz %s, admin %d", r.Status, code)
		}
		return code, fmt.Sprint(checks)
	}
	if code, checks := ready(); code != http.StatusServiceUnavailable || !strings.Contains(checks, "store:unreachable") {
		t.Fatalf("store down: readyz %d %s", code, checks)
	}

	store.down.Store(false)
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("wrong keys: API %s, want 503", r.Status)
	}
	if r := b.get("/auth/checksession"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("wrong keys: checksession %s, want 503 (not logged out)", r.Status)
	}
	e.clock.Advance(time.Second) // past the cached /readyz answer
	if code, checks := ready(); code != http.StatusServiceUnavailable || !strings.Contains(checks, "no configured session key opens") {
		t.Fatalf("wrong keys: readyz %d %s", code, checks)
	}
	if !strings.Contains(e.logs.String(), "none of the configured session keys opens the sessions in the store") {
		t.Error("wrong keys were not logged")
	}
	e.stop()

	e.cfg.Session.Keys, e.opts.Store = rightKeys, nil
	e.start(listen(t, e.cfg.Listen))
	if !loggedIn(t, b) {
		t.Fatal("the session was lost")
	}
}

// downStore fails every call while down is set, as an unreachable store.
type downStore struct {
	session.Store
	down atomic.Bool
}

func (s *downStore) err() error {
	if s.down.Load() {
		return fmt.Errorf("%w: connection refused", session.ErrUnavailable)
	}
	return nil
}

func (s *downStore) Get(ctx context.Context, k session.Key) (session.Record, error) {
	if err := s.err(); err != nil {
		return session.Record{}, err
	}
	return s.Store.Get(ctx, k)
}

func (s *downStore) Set(ctx context.Context, k session.Key, r session.Record, ttl time.Duration) (uint64, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.Store.Set(ctx, k, r, ttl)
}

func (s *downStore) Ping(ctx context.Context) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.Ping(ctx)
}

func listen(t *testing.T, addr string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

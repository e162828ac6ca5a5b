package gateway_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
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

func TestWrongKeyIsAStartupError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	e := newEnv(t, func(c *config.Config) { c.Session.Store = "bolt://" + path })
	b := e.browser()
	b.login("/")
	e.stop()
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

func listen(t *testing.T, addr string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/session"
	"golang.org/x/net/websocket"
)

// One session may hold at most server.websocket_max_per_session open
// sockets (default 8); the next handshake is a 429 JSON too_many_websockets
// that never reaches the upstream. A closed socket frees its slot, and
// other sessions have slots of their own.
func TestWebSocketsPerSessionAreCapped(t *testing.T) {
	c := &config.Config{}
	if c.SetDefaults(); c.Server.WebSocketMaxPerSession != 8 {
		t.Errorf("default websocket_max_per_session = %d, want 8", c.Server.WebSocketMaxPerSession)
	}
	handshakes := make(chan struct{}, 100)
	echo := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
		handshakes <- struct{}{}
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			websocket.Message.Send(ws, "echo: "+msg)
		}
	}))
	defer echo.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Server.WebSocketMaxPerSession = 3
		c.Routes = append(c.Routes, config.Route{Prefix: "/ws/", Upstream: echo.URL + "/", WebSocket: true})
	})
	dial := func(b *browser) (*websocket.Conn, error) {
		cfg, err := websocket.NewConfig(strings.Replace(e.url, "http", "ws", 1)+"/ws/chat", e.url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Header.Set("Cookie", session.CookieName+"="+b.sessionCookie().Value)
		ws, err := websocket.DialConfig(cfg)
		if err == nil {
			websocket.Message.Send(ws, "ping")
			var got string
			ws.SetReadDeadline(time.Now().Add(3 * time.Second))
			if err := websocket.Message.Receive(ws, &got); err != nil || got != "echo: ping" {
				t.Fatalf("round trip: %q %v", got, err)
			}
		}
		return ws, err
	}
	// handshake asks for a socket on a raw connection with a deadline (a
	// 101 answer would have no end) and returns the status and JSON error.
	handshake := func(b *browser) (int, string) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nOrigin: %s\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: %s=%s\r\n\r\n",
			e.url, session.CookieName, b.sessionCookie().Value)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return resp.StatusCode, ""
		}
		var j struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&j)
		return resp.StatusCode, j.Error
	}
	alice := e.browser()
	alice.login("/")
	var open []*websocket.Conn
	for i := range 3 {
		ws, err := dial(alice)
		if err != nil {
			t.Fatalf("socket %d: %v", i+1, err)
		}
		open = append(open, ws)
	}
	if code, e := handshake(alice); code != http.StatusTooManyRequests || e != "too_many_websockets" {
		t.Errorf("4th socket: %d %q", code, e)
	}
	if n := len(handshakes); n != 3 {
		t.Errorf("the upstream saw %d handshakes, want 3", n)
	}
	// Another session has its own slots.
	bob := e.browser()
	bob.login("/")
	ws, err := dial(bob)
	if err != nil {
		t.Fatalf("another session: %v", err)
	}
	ws.Close()
	// A closed socket frees its slot.
	open[0].Close()
	e.eventually("a slot is free again", func() bool {
		ws, err := dial(alice)
		if err == nil {
			open[0] = ws
		}
		return err == nil
	})
	if code, e := handshake(alice); code != http.StatusTooManyRequests {
		t.Errorf("over the cap again: %d %q", code, e)
	}
	for _, ws := range open {
		ws.Close()
	}
}

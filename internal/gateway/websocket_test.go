package gateway_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/session"
	"golang.org/x/net/websocket"
)

func TestWebSocketProxy(t *testing.T) {
	var e *env
	echo := httptest.NewServer(websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error { return nil },
		Handler: func(ws *websocket.Conn) {
			at, _ := strings.CutPrefix(ws.Request().Header.Get("Authorization"), "Bearer ")
			if _, ok := e.op.ValidAccessToken(at); !ok || ws.Request().Header.Get("Cookie") != "" {
				websocket.Message.Send(ws, "unauthorized")
				return
			}
			for {
				var msg string
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return
				}
				websocket.Message.Send(ws, "echo: "+msg)
			}
		},
	})
	defer echo.Close()
	e = newEnv(t, func(c *config.Config) {
		c.Server.ReadTimeout = config.Duration(300 * time.Millisecond) // the socket must outlive it
		c.Server.WebSocketCheck = config.Duration(100 * time.Millisecond)
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/ws/", Upstream: echo.URL + "/", WebSocket: true},
			config.Route{Prefix: "/nows/", Upstream: echo.URL + "/"})
	})
	b := e.browser()
	b.login("/")
	dial := func(path, origin string) (*websocket.Conn, error) {
		cfg, err := websocket.NewConfig(strings.Replace(e.url, "http", "ws", 1)+path, origin)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Header.Set("Cookie", session.CookieName+"="+b.sessionCookie().Value)
		return websocket.DialConfig(cfg)
	}

	ws, err := dial("/ws/chat", e.url)
	if err != nil {
		t.Fatalf("handshake from moat's origin: %v", err)
	}
	for _, msg := range []string{"one", "two"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		if err := websocket.Message.Receive(ws, &got); err != nil || got != "echo: "+msg {
			t.Fatalf("round trip: %q %v", got, err)
		}
		time.Sleep(400 * time.Millisecond) // past server.read_timeout: the socket lives on
	}
	// Logging out closes the socket the session opened.
	cookie := b.sessionCookie()
	b.api("POST", "/auth/logout")
	b.setCookie(cookie)
	ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got string
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Errorf("the socket outlived its session: received %q", got)
	} else if strings.Contains(err.Error(), "timeout") {
		t.Error("the socket was not closed after logout")
	}
	ws.Close()
	b.login("/")

	if _, err := dial("/ws/chat", "http://localhost:5173"); err != nil {
		t.Errorf("handshake from an allowed origin: %v", err)
	}
	for name, c := range map[string]struct{ path, origin string }{
		"foreign origin":          {"/ws/chat", "https://evil.example"},
		"route without websocket": {"/nows/chat", e.url},
	} {
		if ws, err := dial(c.path, c.origin); err == nil {
			ws.Close()
			t.Errorf("%s: the handshake succeeded", name)
		}
	}
}

func TestHTTP2OverTLSAndH2C(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // only for its certificate
	cert := tlsSrv.TLS.Certificates[0]
	tlsSrv.Close()
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certPath, "CERTIFICATE", cert.Certificate[0])
	writeKey(t, keyPath, cert.PrivateKey)

	e := newEnv(t, func(c *config.Config) {
		c.Server.TLSCertFile, c.Server.TLSKeyFile = certPath, keyPath
		c.PublicURL = strings.Replace(c.PublicURL, "http://", "https://", 1)
	})
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the test's own self-signed certificate
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get(strings.Replace(e.url, "http://", "https://", 1) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("over TLS: %s, HSTS %q", resp.Proto, resp.Header.Get("Strict-Transport-Security"))
	}

	e2 := newEnv(t, func(c *config.Config) { c.Server.H2C = true })
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	resp, err = (&http.Client{Transport: tr}).Get(e2.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("h2c: %s", resp.Proto)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pemEncode(typ, der), 0o600); err != nil {
		t.Fatal(err)
	}
}

package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
)

func TestStreamingFlushesEachEvent(t *testing.T) {
	next := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next: // the client saw the event: only then send the next
			case <-time.After(5 * time.Second):
				return
			}
		}
	}))
	defer sse.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/events/", Upstream: sse.URL + "/", Token: config.TokenNone})
	})
	req, _ := http.NewRequest("GET", e.url+"/events/stream", nil)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for i := range 3 {
		got := ""
		for lines.Scan() {
			if got = lines.Text(); got != "" {
				break
			}
		}
		if want := fmt.Sprintf("data: event %d", i); got != want {
			t.Fatalf("read %q, want %q (the event did not arrive before the next was sent)", got, want)
		}
		next <- struct{}{}
	}
}

func TestUpstreamTimeoutAndOutage(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/slow/", Upstream: slow.URL + "/", Token: config.TokenNone, Timeout: config.Duration(300 * time.Millisecond)},
			config.Route{Prefix: "/down/", Upstream: "http://127.0.0.1:1/", Token: config.TokenNone})
	})
	b := e.browser()
	start := time.Now()
	r := b.api("GET", "/slow/x")
	if r.StatusCode != http.StatusGatewayTimeout || r.json(t)["error"] != "upstream_timeout" {
		t.Errorf("slow upstream: %s %s", r.Status, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the route timeout did not bound the wait: %v", d)
	}
	r = b.api("GET", "/down/x")
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(string(r.body), "bad_gateway") {
		t.Errorf("down upstream: %s %s", r.Status, r.body)
	}
}

// A client that stops reading is cut off after server.write_timeout, and
// the upstream request it held is cancelled, while a stream whose events
// come slower than the timeout lasts, over HTTP/1.1 and HTTP/2 alike
// (an HTTP/2 stream is reset when a write deadline passes, writing or not).
func TestWriteTimeoutCutsSlowReadersNotStreams(t *testing.T) {
	cancelled := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				time.Sleep(300 * time.Millisecond) // longer than the write timeout
				fmt.Fprintf(w, "data: event %d\n\n", i)
				w.(http.Flusher).Flush()
			}
			return
		}
		chunk := make([]byte, 32<<10)
		for range 8192 { // 256 MiB, far beyond what socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}))
	defer up.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Server.WriteTimeout = config.Duration(100 * time.Millisecond)
		c.Server.H2C = true
		c.Routes = append(c.Routes, config.Route{Prefix: "/up/", Upstream: up.URL + "/", Token: config.TokenNone})
	})

	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for name, client := range map[string]*http.Client{"HTTP/1.1": {Transport: &http.Transport{}}, "h2c": {Transport: h2c}} {
		// Twice on one connection, with a pause longer than the timeout
		// between: the first answer's bound must not cut off the second.
		for i := range 2 {
			reused := false
			trace := &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) { reused = c.Reused }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", e.url+"/up/events", nil)
			req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 && !reused {
				t.Errorf("%s: the second stream took a new connection", name)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || strings.Count(string(body), "data: event") != 3 {
				t.Errorf("%s stream %d with slow events: %q, %v", name, i, body, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
		client.Transport.(*http.Transport).CloseIdleConnections()
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /up/big HTTP/1.1\r\nHost: x\r\n%s: %s\r\n\r\n", csrf.HeaderName, csrf.HeaderValue) // and never read
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("a client that stopped reading still holds its upstream request")
	}
	if r := e.browser().get("/healthz"); r.StatusCode != http.StatusOK {
		t.Fatalf("healthz after a slow reader: %s", r.Status)
	}
}

package gateway_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
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

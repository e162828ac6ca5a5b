package gateway_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
)

// cuttable is a TCP proxy to a real service that a test can cut and
// restore, to simulate an outage without stopping the shared service.
type cuttable struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newCuttable(t *testing.T, target string) *cuttable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cuttable{ln: ln, target: target}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			down := c.down
			c.mu.Unlock()
			if down {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); c.cut() })
	return c
}

func (c *cuttable) addr() string { return c.ln.Addr().String() }

func (c *cuttable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func (c *cuttable) restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}

func TestStoreOutageIs503AndRecovers(t *testing.T) {
	raw := os.Getenv("MOAT_TEST_REDIS_URL")
	if raw == "" {
		t.Skip("set MOAT_TEST_REDIS_URL to run the Redis outage test")
	}
	// The test's Redis, reached through a proxy the test can cut.
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("MOAT_TEST_REDIS_URL %q: want redis://host:port/db", raw)
	}
	proxy := newCuttable(t, u.Host)
	u.Host = proxy.addr()
	q := u.Query()
	q.Set("prefix", "moat-outage-"+strconv.FormatInt(time.Now().UnixNano(), 36)+":")
	q.Set("timeout", "300ms")
	u.RawQuery = q.Encode()
	e := newEnv(t, func(c *config.Config) {
		c.Session.Store = u.String()
		c.Session.CacheTTL = config.Duration(100 * time.Millisecond)
	})
	b := e.browser()
	b.login("/")
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("before the outage: %s", r.Status)
	}

	proxy.cut()
	time.Sleep(150 * time.Millisecond) // past the session cache
	start := time.Now()
	r := b.api("GET", "/resource/api/x")
	if r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
		t.Errorf("during the outage: %s %s, want 503 unavailable", r.Status, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 503 took %v", d)
	}
	if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable || r.json(t)["checks"].(map[string]any)["store"] == "ok" {
		t.Errorf("readyz during the outage: %s %s", r.Status, r.body)
	}
	if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("logout during the outage: %s", r.Status)
	}
	if b.sessionCookie() == nil {
		t.Fatal("the outage (or a logout that could not reach the store) cleared the session cookie")
	}

	proxy.restore()
	e.eventually("moat recovers without a restart", func() bool {
		return b.get("/readyz").StatusCode == http.StatusOK
	})
	if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusOK {
		t.Errorf("after the outage the same session: %s %s", r.Status, r.body)
	}
	if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusOK || loggedIn(t, b) {
		t.Errorf("the retried logout: %s", r.Status)
	}
}

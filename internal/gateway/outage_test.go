package gateway_test

import (
	"net/http"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/tcprelay"
)

func TestStoreOutageIs503AndRecovers(t *testing.T) {
	raw := os.Getenv("MOAT_TEST_REDIS_URL")
	if raw == "" {
		t.Skip("set MOAT_TEST_REDIS_URL to run the Redis outage test")
	}
	// The test's Redis, reached through a relay the test can cut.
	relayed, relay := tcprelay.Via(t, raw)
	u, _ := url.Parse(relayed)
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

	relay.Refuse() // Redis is down: live connections break, new ones fail
	relay.Cut()
	time.Sleep(150 * time.Millisecond) // past the session cache
	start := time.Now()
	r := b.api("GET", "/resource/api/x")
	if r.StatusCode != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
		t.Errorf("during the outage: %s %s, want 503 unavailable", r.Status, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 503 took %v", d)
	}
	if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable || r.json(t)["ready"] != false {
		t.Errorf("readyz during the outage: %s %s", r.Status, r.body)
	}
	if code, checks := adminReadyz(t, e.gw); code != http.StatusServiceUnavailable || checks["store"] == "ok" {
		t.Errorf("admin readyz during the outage: %d %v", code, checks)
	}
	if r := b.api("POST", "/auth/logout"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("logout during the outage: %s", r.Status)
	}
	if b.sessionCookie() == nil {
		t.Fatal("the outage (or a logout that could not reach the store) cleared the session cookie")
	}

	relay.Accept()
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

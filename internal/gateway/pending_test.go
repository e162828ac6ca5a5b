package gateway_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/session/memory"
)

// TestOfficeBehindOneAddressLogsIn: with the default limits, 300 people
// behind one IPv4 address log in within one minute (the test clock moves
// 200 ms per login), each with a browser of their own.
func TestOfficeBehindOneAddressLogsIn(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Limits = config.Limits{} })
	for i := range 300 {
		b := e.browser()
		if r := b.login("/"); r.StatusCode != http.StatusFound || b.sessionCookie() == nil {
			t.Fatalf("person %d of 300: %s %s", i, r.Status, r.body)
		}
		e.clock.Advance(200 * time.Millisecond)
	}
	if n := e.metricValue("moat_logins_completed_total"); n != 300 {
		t.Errorf("moat_logins_completed_total = %v, want 300", n)
	}
}

func (e *env) gauge(name string) float64 {
	e.t.Helper()
	mfs, err := e.gw.Metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	e.t.Fatalf("no metric %s", name)
	return 0
}

// flood starts n logins from n addresses behind a trusted proxy and
// returns how many were admitted; every refusal must be the clear 503.
func flood(t *testing.T, e *env, from, n int) (admitted int) {
	b := e.browser()
	for i := range n {
		r := b.get("/auth/login", "X-Forwarded-For", fmt.Sprintf("198.51.%d.%d", (from+i)/250, (from+i)%250))
		switch r.StatusCode {
		case http.StatusFound:
			admitted++
		case http.StatusServiceUnavailable:
			if j := r.json(t); j["error"] != "login_busy" || r.Header.Get("Retry-After") == "" {
				t.Fatalf("a refused login: %s %s Retry-After=%q", r.Status, r.body, r.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("login %d: %s %s", i, r.Status, r.body)
		}
	}
	return admitted
}

// TestPendingLoginsCappedPerReplica: a flood of logins from many addresses
// (each within its own rate limit) stops at the replica's cap: the store
// holds no more transactions than that, and the refusals are counted.
// A completed login frees its place.
func TestPendingLoginsCappedPerReplica(t *testing.T) {
	store := memory.New(memory.Options{})
	e := newEnv(t, func(c *config.Config) {
		c.Limits = config.Limits{PendingLogins: config.PendingLogins{PerReplica: 50}}
		c.Server.TrustedProxies = []string{"127.0.0.1/32"}
	}, func(o *gateway.Options) { o.Store = store })
	if n := flood(t, e, 0, 400); n != 50 {
		t.Errorf("%d of 400 logins admitted, want the cap of 50", n)
	}
	// The transactions and the store's counters: ten buckets at most.
	if n := store.Len(); n > 50+11 {
		t.Errorf("the store holds %d records after the flood, want at most 61", n)
	}
	if n := e.metricValue("moat_logins_refused_total"); n != 350 {
		t.Errorf("moat_logins_refused_total = %v, want 350", n)
	}
	if n := e.gauge("moat_logins_pending"); n != 50 {
		t.Errorf("moat_logins_pending = %v, want 50", n)
	}
	// Once they expire (session.login_timeout), logins are admitted again.
	e.clock.Advance(e.cfg.Session.LoginTimeout.D())
	if n := flood(t, e, 1000, 1); n != 1 {
		t.Error("a login after the flood expired was refused")
	}
	if r := e.browser().login("/"); r.StatusCode != http.StatusFound {
		t.Errorf("a whole login: %s %s", r.Status, r.body)
	}
	if n := e.gauge("moat_logins_pending"); n != 1 {
		t.Errorf("moat_logins_pending after one started and one completed = %v, want 1", n)
	}
}

// TestPendingLoginsCappedPerStore: two replicas sharing a store admit no
// more than the store's cap between them.
func TestPendingLoginsCappedPerStore(t *testing.T) {
	store := memory.New(memory.Options{})
	mods := []any{func(c *config.Config) {
		c.Limits = config.Limits{PendingLogins: config.PendingLogins{PerStore: 60}}
		c.Server.TrustedProxies = []string{"127.0.0.1/32"}
	}, func(o *gateway.Options) { o.Store = store }}
	a, b := newEnv(t, mods...), newEnv(t, mods...) // both clocks are the real time: one window
	n := flood(t, a, 0, 40) + flood(t, b, 100, 40) + flood(t, a, 200, 40)
	if n != 60 {
		t.Errorf("two replicas admitted %d of 120 logins, want the store's cap of 60", n)
	}
	if n := store.Len(); n > 60+11 {
		t.Errorf("the store holds %d records, want at most 71", n)
	}
}

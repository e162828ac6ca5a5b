package gateway

import (
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/metrics"
	"github.com/moat-bff/moat/internal/pending"
	"github.com/moat-bff/moat/internal/session"
)

// newPending builds the cap on login transactions in flight; it is built
// once, so that a reload neither forgets the count nor registers its
// metrics twice (rate_limit.pending_logins takes effect at restart).
func newPending(cfg *config.Config, sessions *session.Manager, m *metrics.Metrics) *pending.Cap {
	var c *pending.Cap
	refused := m.PendingLogins(func() int { return c.Pending() })
	c = pending.New(pending.Options{
		PerReplica: cfg.Limits.PendingLogins.PerReplica, PerStore: cfg.Limits.PendingLogins.PerStore,
		Timeout: cfg.Session.LoginTimeout.D(), Store: sessions.Store(), Now: sessions.Now, OnFull: refused,
	})
	return c
}

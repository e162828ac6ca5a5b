package config

// PendingLogins caps login transactions in flight: started, neither
// completed nor expired (session.login_timeout).
type PendingLogins struct {
	// PerReplica bounds those this replica started.
	PerReplica int `yaml:"per_replica"`
	// PerStore bounds those started in the shared store within one login
	// timeout, by all replicas.
	PerStore int `yaml:"per_store"`
}

// setDefaults fills the rate_limit keys added after the first release.
func (l *Limits) setDefaults() {
	if l.IPv6Prefix == 0 {
		l.IPv6Prefix = 64
	}
	if l.PendingLogins.PerReplica == 0 {
		l.PendingLogins.PerReplica = 10_000
	}
	if l.PendingLogins.PerStore == 0 {
		l.PendingLogins.PerStore = 50_000
	}
}

// validate checks the rate_limit keys setDefaults fills.
func (l *Limits) validate(add func(key, format string, args ...any)) {
	if l.IPv6Prefix < 32 || l.IPv6Prefix > 128 {
		add("rate_limit.ipv6_prefix", "%d is not a prefix length from 32 to 128; use 64 (one subscriber's /64), 56 or 48 for ISPs that hand out larger blocks, or 128 for one address", l.IPv6Prefix)
	}
	if l.PendingLogins.PerReplica < 1 {
		add("rate_limit.pending_logins.per_replica", "%d must be at least 1; the default is 10000", l.PendingLogins.PerReplica)
	}
	if l.PendingLogins.PerStore < 1 {
		add("rate_limit.pending_logins.per_store", "%d must be at least 1; the default is 50000", l.PendingLogins.PerStore)
	}
}

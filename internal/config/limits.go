package config

// setDefaults fills the rate_limit keys added after the first release.
func (l *Limits) setDefaults() {
	if l.IPv6Prefix == 0 {
		l.IPv6Prefix = 64
	}
}

// validate checks the rate_limit keys setDefaults fills.
func (l *Limits) validate(add func(key, format string, args ...any)) {
	if l.IPv6Prefix < 32 || l.IPv6Prefix > 128 {
		add("rate_limit.ipv6_prefix", "%d is not a prefix length from 32 to 128; use 64 (one subscriber's /64), 56 or 48 for ISPs that hand out larger blocks, or 128 for one address", l.IPv6Prefix)
	}
}

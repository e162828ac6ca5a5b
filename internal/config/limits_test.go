package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

func TestIPv6PrefixDefaultAndBounds(t *testing.T) {
	base := strings.Replace(goodYAML, "%s", session.NewKey(), 1)
	cfg, err := Load(writeConfig(t, base), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.IPv6Prefix != 64 {
		t.Errorf("rate_limit.ipv6_prefix default = %d, want 64", cfg.Limits.IPv6Prefix)
	}
	for _, tc := range []struct {
		bits int
		ok   bool
	}{{31, false}, {32, true}, {48, true}, {128, true}, {129, false}, {-1, false}} {
		_, err := Load(writeConfig(t, base+fmt.Sprintf("rate_limit:\n  ipv6_prefix: %d\n", tc.bits)), noEnv)
		if tc.ok && err != nil {
			t.Errorf("ipv6_prefix %d: %v", tc.bits, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "rate_limit.ipv6_prefix:")) {
			t.Errorf("ipv6_prefix %d: err = %v, want it to name rate_limit.ipv6_prefix", tc.bits, err)
		}
	}
}

func TestPendingLoginsDefaultsAndBounds(t *testing.T) {
	base := strings.Replace(goodYAML, "%s", session.NewKey(), 1)
	cfg, err := Load(writeConfig(t, base), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Limits.PendingLogins; p.PerReplica != 10_000 || p.PerStore != 50_000 {
		t.Errorf("rate_limit.pending_logins defaults = %+v", p)
	}
	if l := cfg.Limits.Login; l.Burst != 600 {
		t.Errorf("rate_limit.login burst default = %d, want 600 (300 logins, login and callback, behind one address)", l.Burst)
	}
	_, err = Load(writeConfig(t, base+"rate_limit:\n  pending_logins: {per_replica: -1, per_store: -5}\n"), noEnv)
	for _, k := range []string{"rate_limit.pending_logins.per_replica:", "rate_limit.pending_logins.per_store:"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("err = %v, want it to name %s", err, k)
		}
	}
}

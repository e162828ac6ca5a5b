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

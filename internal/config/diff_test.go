package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/secret"
)

func TestDiffNamesExactKeyPaths(t *testing.T) {
	base := func() *Config {
		c := &Config{PublicURL: "https://a", Routes: []Route{{Prefix: "/a/"}, {Prefix: "/b/"}}}
		c.SetDefaults()
		return c
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"one nested key", func(c *Config) { c.Session.IdleTimeout = Duration(time.Minute) }, []string{"session.idle_timeout"}},
		{"a route field", func(c *Config) { c.Routes[1].Upstream = "https://x/" }, []string{"routes[1].upstream"}},
		{"a route more", func(c *Config) { c.Routes = append(c.Routes, Route{}) }, []string{"routes"}},
		{"a list", func(c *Config) { c.OIDC.Scopes = []string{"openid"} }, []string{"oidc.scopes"}},
		{"a limit", func(c *Config) { c.Limits.Login.Burst = 1 }, []string{"rate_limit.login.burst"}},
		{"a secret", func(c *Config) { c.Admin.Token = secret.String("x") }, []string{"admin.token"}},
		{"two", func(c *Config) { c.Listen = "x"; c.Log.Format = "text" }, []string{"listen", "log.format"}},
	} {
		a, b := base(), base()
		tc.change(b)
		if got := Diff(a, b); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Diff = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDiffNamesKeysAsDecodeDoes: an inline struct's keys sit at its
// parent's level, as decode reads them, not under the field's Go name.
func TestDiffNamesKeysAsDecodeDoes(t *testing.T) {
	type Common struct {
		Timeout Duration `yaml:"timeout"`
	}
	type store struct {
		URL    string `yaml:"url"`
		Common `yaml:",inline"`
	}
	a, b := store{URL: "x"}, store{URL: "x"}
	b.Timeout = Duration(time.Second)
	var got []string
	diff(reflect.ValueOf(a), reflect.ValueOf(b), "session", &got)
	if want := []string{"session.timeout"}; !reflect.DeepEqual(got, want) {
		t.Errorf("diff = %v, want %v", got, want)
	}
}

package config

import "testing"

func TestPostLogoutRedirectDefault(t *testing.T) {
	for _, tc := range []struct {
		public, frontend, set, want string
	}{
		{"https://app.example.com", "", "", "https://app.example.com/"},
		{"https://app.example.com/", "", "", "https://app.example.com/"},
		{"https://bff.example.com", "https://app.example.com/home", "", "https://app.example.com/home"},
		{"https://bff.example.com", "https://app.example.com/", "https://app.example.com/bye", "https://app.example.com/bye"},
	} {
		c := &Config{PublicURL: tc.public, FrontendURL: tc.frontend}
		c.OIDC.PostLogoutRedirectURL = tc.set
		if got := c.PostLogoutRedirect(); got != tc.want {
			t.Errorf("%+v: %q", tc, got)
		}
	}
}

package config

import (
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

func TestForwardAuthConfig(t *testing.T) {
	good := strings.Replace(goodYAML, "%s", session.NewKey(), 1)
	for _, c := range []struct {
		name, yaml string
		want       []string // keys the error must name; none: valid
	}{
		{"off by default", "", nil},
		{"on", "forward_auth:\n  listen: 127.0.0.1:4003\n  trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n  identity_headers: {X-Moat-Subject: sub, X-Moat-Email: email}\n", nil},
		{"on the browser listener", "forward_auth:\n  listen: 127.0.0.1:4001\n  trusted_proxies: [127.0.0.1]\n", []string{"forward_auth.listen:"}},
		{"nobody trusted", "forward_auth:\n  listen: 127.0.0.1:4003\n", []string{"forward_auth.trusted_proxies:"}},
		{"bad proxy", "forward_auth:\n  listen: 127.0.0.1:4003\n  trusted_proxies: [gateway]\n", []string{"forward_auth.trusted_proxies[0]:"}},
		{"everybody trusted", "forward_auth:\n  listen: 127.0.0.1:4003\n  trusted_proxies: [127.0.0.1, 0.0.0.0/0, \"::/0\"]\n", []string{"forward_auth.trusted_proxies[1]:", "forward_auth.trusted_proxies[2]:"}},
		{"not host:port", "forward_auth:\n  listen: gateway\n  trusted_proxies: [127.0.0.1]\n", []string{"forward_auth.listen:"}},
		{"keys without listen", "forward_auth:\n  trusted_proxies: [127.0.0.1]\n", []string{"forward_auth.listen:"}},
		{"reserved identity header", "forward_auth:\n  listen: 127.0.0.1:4003\n  trusted_proxies: [127.0.0.1]\n  identity_headers: {authorization: sub, x-moat-error: sub, \"X Bad\": sub, X-Empty: \"\"}\n",
			[]string{"forward_auth.identity_headers.authorization:", "forward_auth.identity_headers.x-moat-error:", "forward_auth.identity_headers.X Bad:", "forward_auth.identity_headers.X-Empty:"}},
		{"route under /_moat/", "routes:\n  - prefix: /_moat/x/\n    upstream: https://api.internal/x/\n", []string{"routes[0].prefix:"}},
		// RFC 9449 §7.1: a bound token needs a proof per upstream request,
		// which only moat's own proxy signs.
		{"with oidc.dpop", "forward_auth:\n  listen: 127.0.0.1:4003\n  trusted_proxies: [127.0.0.1]\n", []string{"forward_auth.listen: cannot be used with oidc.dpop"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := good
			if strings.HasSuffix(c.name, "oidc.dpop") {
				body = strings.Replace(body, "oidc:\n", "oidc:\n  dpop: true\n", 1)
			}
			if strings.HasPrefix(c.yaml, "routes:") {
				body = strings.Replace(good, "routes:\n", c.yaml, 1) // the new route comes first
			} else {
				body += c.yaml
			}
			_, err := Load(writeConfig(t, body), noEnv)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, k := range c.want {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error does not name %s:\n%v", k, err)
				}
			}
		})
	}
}

package config

import (
	"fmt"
	"strings"
)

// TokenExchange is routes[].token_exchange: the user's access token is
// exchanged at the token endpoint (RFC 8693 §2.1) for one meant for this
// route's upstream alone.
type TokenExchange struct {
	// Audience is the logical name of the target service (RFC 8693 §2.1
	// audience), as the IdP knows it.
	Audience string `yaml:"audience"`
	// Resource is the target service's absolute URI (RFC 8693 §2.1
	// resource, as RFC 8707).
	Resource string `yaml:"resource"`
	// Scope is asked for the exchanged token; empty leaves it to the IdP.
	Scope []string `yaml:"scope"`
}

// validateTokenExchange checks routes[i].token_exchange.
func validateTokenExchange(key string, r Route) []error {
	x := r.TokenExchange
	if x == nil {
		return nil
	}
	key += ".token_exchange"
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", k, fmt.Sprintf(format, args...)))
	}
	if x.Audience == "" && x.Resource == "" {
		add(key, "needs audience or resource (or both): the target the exchanged token is for, e.g. audience: orders-api")
	}
	if x.Audience != "" && strings.TrimSpace(x.Audience) != x.Audience {
		add(key+".audience", "%q has leading or trailing spaces; remove them", x.Audience)
	}
	if x.Resource != "" {
		if !isResourceURI(x.Resource) {
			add(key+".resource", "%q must be an absolute URI without a fragment (RFC 8693 §2.1), e.g. https://api.example.com/", x.Resource)
		}
	}
	for j, s := range x.Scope {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			add(fmt.Sprintf("%s.scope[%d]", key, j), "%q is not a scope token (RFC 6749 §3.3): one word per list item", s)
		}
	}
	if r.Token != TokenUser {
		add(key, "needs token: %s (the user's access token is what is exchanged)", TokenUser)
	}
	if r.Resource != "" {
		add(key, "cannot be combined with routes[].resource: choose one way to get the upstream's token (use token_exchange.resource for the exchange's target)")
	}
	return errs
}

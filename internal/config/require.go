package config

import (
	"errors"
	"fmt"
	"slices"

	"github.com/moat-bff/moat/internal/policy"
)

// Requirement is one condition of routes[].require; all of a route's
// conditions must hold (docs/authorization.md). Exactly one of claim (with
// any_of or all_of), acr, amr, max_age or scope is set.
type Requirement struct {
	// Claim is a dotted path into the ID token's claims, e.g. groups or
	// realm_access.roles.
	Claim string `yaml:"claim"`
	// AnyOf: the claim holds at least one of these values.
	AnyOf []string `yaml:"any_of"`
	// AllOf: the claim holds all of these values.
	AllOf []string `yaml:"all_of"`
	// ACR: the login's acr is one of these, or the SPA is asked to step up
	// with them as acr_values (each must be in oidc.acr_values).
	ACR []string `yaml:"acr"`
	// AMR: the login's amr holds one of these, or the SPA is asked to log
	// in again (prompt=login).
	AMR []string `yaml:"amr"`
	// MaxAge: the login (auth_time) is no older, or the SPA is asked to log
	// in again with max_age.
	MaxAge Duration `yaml:"max_age"`
	// Scope: the user's access token was granted every one of these
	// scopes, or the request is forbidden (403).
	Scope []string `yaml:"scope"`
}

// Rule returns q for package policy.
func (q Requirement) Rule() policy.Rule {
	return policy.Rule{Claim: q.Claim, AnyOf: q.AnyOf, AllOf: q.AllOf, ACR: q.ACR, AMR: q.AMR, MaxAge: q.MaxAge.D(), Scope: q.Scope}
}

// validateRequire checks routes[i].require.
func (c *Config) validateRequire(i int, r Route, add func(key, format string, args ...any)) {
	if len(r.Require) > 0 && r.Token != TokenUser {
		add(fmt.Sprintf("routes[%d].require", i), "needs token: %s (rules are about the logged-in user)", TokenUser)
	}
	for j, q := range r.Require {
		key := fmt.Sprintf("routes[%d].require[%d]", i, j)
		if err := q.Rule().Validate(); errors.Is(err, policy.ErrScopeToken) {
			add(key+".scope", "%v; write one scope per list item, e.g. {scope: [orders:read, orders:write]}", err)
			continue
		} else if err != nil {
			add(key, "%v; e.g. {claim: groups, any_of: [admin]}, {acr: [%s]}, {max_age: 15m} or {scope: [orders:read]}", err, "urn:example:mfa")
			continue
		}
		for _, v := range q.ACR {
			if !slices.Contains(c.OIDC.ACRValues, v) {
				add(key+".acr", "%q is not in oidc.acr_values, so a step-up login could not ask for it; add it there", v)
			}
		}
	}
}

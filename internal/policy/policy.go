// Package policy decides whether a session may use a route: the
// conditions of routes[].require on the claims of the session's ID token
// and on the scope its access token was granted.
//
// An unmet condition about a right the user lacks (a group, a role, any
// claim value, a scope) forbids the request (403): logging in again would
// not change it. moat asks for the same oidc.scopes at every login, and
// which of them the IdP grants is its decision (RFC 6749 §3.3), so a
// missing scope is RFC 6750 §3.1's insufficient_scope, a 403. An unmet condition that a stronger or fresher login can meet
// (acr, amr, auth_time) asks for a step-up (401 with the login URL carrying
// acr_values, max_age or prompt=login; OIDC Core §3.1.2.1, RFC 9470 §3).
// An absent or malformed claim never meets a condition: rules fail closed.
package policy

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rule is one condition. Exactly one of Claim (with AnyOf or AllOf), ACR,
// AMR, MaxAge or Scope is set.
type Rule struct {
	// Claim is a path into the claims: "groups", or "realm_access.roles"
	// for a nested object. A claim name that itself holds dots (Auth0's
	// namespaced "https://example.com/roles") matches as a whole first.
	Claim string
	// AnyOf: the claim (a string, number, boolean or an array of them)
	// holds at least one of these values.
	AnyOf []string
	// AllOf: the claim holds every one of these values.
	AllOf []string
	// ACR: the session's acr claim is one of these; a step-up asks the
	// IdP for them as acr_values.
	ACR []string
	// AMR: the session's amr claim holds one of these; a step-up asks for
	// a new interactive login (prompt=login).
	AMR []string
	// MaxAge: auth_time is no older than this; a step-up sends max_age.
	MaxAge time.Duration
	// Scope: the session's access token was granted every one of these
	// scopes (RFC 6749 §3.3 scope-tokens).
	Scope []string
}

// Validate reports what is wrong with r, for a configuration error.
func (r Rule) Validate() error {
	kinds := 0
	for _, set := range []bool{r.Claim != "", r.ACR != nil, r.AMR != nil, r.MaxAge != 0, r.Scope != nil} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		return errors.New("set exactly one of claim, acr, amr, max_age or scope")
	case r.Claim != "" && (r.AnyOf == nil) == (r.AllOf == nil):
		return errors.New("a claim rule needs exactly one of any_of or all_of")
	case r.Claim == "" && (r.AnyOf != nil || r.AllOf != nil):
		return errors.New("any_of and all_of belong to a claim rule")
	case r.Claim != "" && (strings.HasPrefix(r.Claim, ".") || strings.HasSuffix(r.Claim, ".") || strings.Contains(r.Claim, "..")):
		return fmt.Errorf("claim %q is not a dotted path", r.Claim)
	case r.MaxAge < 0:
		return errors.New("max_age must be positive")
	}
	for _, vs := range [][]string{r.AnyOf, r.AllOf, r.ACR, r.AMR, r.Scope} {
		if vs != nil && len(vs) == 0 {
			return errors.New("a list of values must not be empty")
		}
		if slices.Contains(vs, "") {
			return errors.New("a value must not be empty")
		}
	}
	for _, s := range r.Scope {
		if !scopeToken(s) {
			return fmt.Errorf("%q %w", s, ErrScopeToken)
		}
	}
	return nil
}

// ErrScopeToken: a scope rule names something no token response can grant.
var ErrScopeToken = errors.New("is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)")

// scopeToken reports whether s is 1*( %x21 / %x23-5B / %x5D-7E ).
func scopeToken(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// Policy is the conjunction of a route's rules.
type Policy struct {
	rules []Rule
	login string
}

// New compiles rules for a route whose step-up logins go to loginURL (moat's
// absolute /auth/login URL, so that a cross-origin SPA can navigate to it).
// It returns nil for no rules: nil allows all.
func New(rules []Rule, loginURL string) (*Policy, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
	}
	return &Policy{rules: slices.Clone(rules), login: loginURL}, nil
}

// Outcome is a decision. The zero Outcome allows.
type Outcome struct {
	// Forbidden: a rule about the user's rights is unmet.
	Forbidden bool
	// StepUp, when not empty, is the login URL (path and query) that
	// meets every unmet login rule.
	StepUp string
	// Reason names the first unmet rule, for logs (never a claim value).
	Reason string
}

// Allowed reports whether the request may go on.
func (o Outcome) Allowed() bool { return !o.Forbidden && o.StepUp == "" }

// Check decides for claims (as decoded from the ID token's JSON) and scope
// (the space-delimited scope granted to the session's access token; ""
// when moat does not know it, which meets no scope rule) at now. A nil
// Policy allows.
func (p *Policy) Check(claims map[string]any, scope string, now time.Time) Outcome {
	if p == nil {
		return Outcome{}
	}
	var out Outcome
	step := url.Values{}
	for _, r := range p.rules {
		switch {
		case r.Claim != "":
			vals := values(lookup(claims, r.Claim))
			if (r.AnyOf == nil || anyIn(vals, r.AnyOf)) && (r.AllOf == nil || allIn(vals, r.AllOf)) {
				continue
			}
			return Outcome{Forbidden: true, Reason: "claim " + r.Claim}
		case r.Scope != nil:
			if granted(scope, r.Scope) {
				continue
			}
			return Outcome{Forbidden: true, Reason: "scope"}
		case r.ACR != nil:
			if acr, ok := claims["acr"].(string); ok && slices.Contains(r.ACR, acr) {
				continue
			}
			step.Set("acr_values", strings.Join(r.ACR, " "))
			out.reason("acr")
		case r.AMR != nil:
			if anyIn(values(claims["amr"]), r.AMR) {
				continue
			}
			step.Set("prompt", "login")
			out.reason("amr")
		case r.MaxAge > 0:
			if at, ok := claims["auth_time"].(float64); ok && !math.IsInf(at, 0) && fresh(at, r.MaxAge, now) {
				continue
			}
			secs := int64(r.MaxAge / time.Second)
			if old, err := strconv.ParseInt(step.Get("max_age"), 10, 64); err == nil && old < secs {
				secs = old // the strictest of several max_age rules
			}
			step.Set("max_age", strconv.FormatInt(secs, 10))
			out.reason("max_age")
		}
	}
	if len(step) > 0 {
		out.StepUp = p.login + "?" + step.Encode()
	}
	return out
}

func (o *Outcome) reason(r string) {
	if o.Reason == "" {
		o.Reason = r
	}
}

func fresh(authTime float64, maxAge time.Duration, now time.Time) bool {
	return now.Sub(time.Unix(int64(authTime), 0)) <= maxAge
}

// lookup follows a dotted path, preferring the longest key that exists at
// each level, so "https://example.com/roles" and "realm_access.roles" both
// resolve.
func lookup(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	for i := len(path) - 1; i > 0; i-- {
		if path[i] != '.' {
			continue
		}
		if obj, ok := claims[path[:i]].(map[string]any); ok {
			if v := lookup(obj, path[i+1:]); v != nil {
				return v
			}
		}
	}
	return nil
}

// values returns a claim's scalar values as text: a string, number or
// boolean, or an array of them. Anything else (absent, null, object,
// nested array) has no values, so it meets no condition.
func values(v any) []string {
	if arr, ok := v.([]any); ok {
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, ok := scalar(e)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	if s, ok := scalar(v); ok {
		return []string{s}
	}
	return nil
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

func anyIn(have, want []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// granted reports whether the space-delimited scope holds every one of
// want (RFC 6749 §3.3: the order does not matter).
func granted(scope string, want []string) bool {
next:
	for _, w := range want {
		for g := range strings.FieldsSeq(scope) {
			if g == w {
				continue next
			}
		}
		return false
	}
	return true
}

func allIn(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

package config

import "testing"

// TestIsResourceURI: routes[].resource and routes[].token_exchange.resource
// share one rule, an absolute URI without a fragment (RFC 8707 §2).
func TestIsResourceURI(t *testing.T) {
	for s, want := range map[string]bool{
		"https://api.example.com/":      true,
		"https://api.example.com/a?b=c": true,
		"urn:example:orders":            true,
		"api-a":                         false,
		"/orders/":                      false,
		"":                              false,
		"https://api.example.com/#x":    false,
		"https://api.example.com/#":     false,
		"https://api.example.com/%zz":   false,
	} {
		if got := isResourceURI(s); got != want {
			t.Errorf("isResourceURI(%q) = %v, want %v", s, got, want)
		}
	}
}

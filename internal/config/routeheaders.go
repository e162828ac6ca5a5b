package config

import (
	"fmt"
	"net/http"

	"github.com/moat-bff/moat/internal/proxy"
)

// validateRouteHeaders checks routes[i].forward_headers: each must be a
// header name that may reach an upstream (proxy.CheckForwardHeader), once.
func validateRouteHeaders(key string, r Route) []error {
	var errs []error
	seen := map[string]bool{}
	for j, h := range r.ForwardHeaders {
		k := fmt.Sprintf("%s.forward_headers[%d]", key, j)
		if why := proxy.CheckForwardHeader(h); why != "" {
			errs = append(errs, fmt.Errorf("%s: %q %s; remove it from the list", k, h, why))
			continue
		}
		if c := http.CanonicalHeaderKey(h); seen[c] {
			errs = append(errs, fmt.Errorf("%s: %q is listed twice", k, h))
		} else {
			seen[c] = true
		}
	}
	return errs
}

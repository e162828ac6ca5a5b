package gateway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// yamlDocs decodes every document of a docs block.
func yamlDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(docsBlock(t, name))))
	var docs []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: not YAML: %v", name, err)
		}
		docs = append(docs, m)
	}
}

// dig follows keys (a number indexes a list) and returns what it finds.
func dig(v any, path ...any) (any, error) {
	for i, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%v: not a map", path[:i])
			}
			if v, ok = m[k]; !ok {
				return nil, fmt.Errorf("%v: no key %q", path[:i], k)
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil, fmt.Errorf("%v: no item %d", path[:i], k)
			}
			v = l[k]
		}
	}
	return v, nil
}

// strs flattens a list of strings, or of {exact: x} matchers, or a
// comma-separated string.
func strs(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		for s := range strings.SplitSeq(v, ",") {
			out = append(out, strings.ToLower(strings.TrimSpace(s)))
		}
	case []any:
		for _, x := range v {
			switch x := x.(type) {
			case string:
				out = append(out, strings.ToLower(x))
			case map[string]any:
				for k, y := range x {
					out = append(out, k+":"+strings.ToLower(fmt.Sprint(y)))
				}
			}
		}
	}
	return out
}

// TestGatewayConfigsParse checks the blocks of docs/gateways.md that CI
// cannot run (no Traefik, Envoy, Istio or Kubernetes here): well-formed
// YAML, the endpoints moat serves, the grant headers going upstream only,
// and the cookie kept from the upstream.
func TestGatewayConfigsParse(t *testing.T) {
	type want struct {
		path  []any
		check func(any) error
	}
	eq := func(s string) func(any) error {
		return func(v any) error {
			if fmt.Sprint(v) != s {
				return fmt.Errorf("%v, want %s", v, s)
			}
			return nil
		}
	}
	has := func(items ...string) func(any) error {
		return func(v any) error {
			got := strs(v)
			for _, it := range items {
				if !slices.Contains(got, it) {
					return fmt.Errorf("%v lacks %s", got, it)
				}
			}
			return nil
		}
	}
	hcm := []any{"static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config"}
	authz := append(append([]any{}, hcm...), "http_filters", 0, "typed_config", "http_service")
	vhost := append(append([]any{}, hcm...), "route_config", "virtual_hosts", 0, "routes")
	for _, c := range []struct {
		block string
		doc   int
		wants []want
	}{
		{"ingress-nginx", 0, []want{
			{[]any{"metadata", "annotations", "nginx.ingress.kubernetes.io/auth-url"}, eq("http://moat-forward-auth.moat.svc.cluster.local:4003/_moat/forward-auth")},
			{[]any{"metadata", "annotations", "nginx.ingress.kubernetes.io/auth-response-headers"}, has("authorization", "x-moat-subject")},
			{[]any{"spec", "rules", 0, "http", "paths", 0, "path"}, eq("/api/")},
		}},
		{"ingress-nginx", 1, []want{{[]any{"spec", "rules", 0, "http", "paths", 0, "path"}, eq("/auth/")}}},
		{"traefik-file", 0, []want{
			{[]any{"http", "middlewares", "moat-forward-auth", "forwardAuth", "address"}, eq("http://127.0.0.1:4003/_moat/forward-auth")},
			{[]any{"http", "middlewares", "moat-forward-auth", "forwardAuth", "trustForwardHeader"}, eq("false")},
			{[]any{"http", "middlewares", "moat-forward-auth", "forwardAuth", "authResponseHeaders"}, has("authorization", "x-moat-subject")},
			{[]any{"http", "middlewares", "cookies-stay-with-moat", "headers", "customRequestHeaders", "Cookie"}, eq("")},
			{[]any{"http", "middlewares", "cookies-stay-with-moat", "headers", "customResponseHeaders", "Set-Cookie"}, eq("")},
			{[]any{"http", "routers", "api", "middlewares"}, has("moat-forward-auth", "cookies-stay-with-moat")},
		}},
		{"traefik-crd", 0, []want{
			{[]any{"kind"}, eq("Middleware")},
			{[]any{"spec", "forwardAuth", "address"}, eq("http://moat-forward-auth.moat.svc.cluster.local:4003/_moat/forward-auth")},
			{[]any{"spec", "forwardAuth", "authResponseHeaders"}, has("authorization", "x-moat-subject")},
		}},
		{"traefik-crd", 2, []want{
			{[]any{"kind"}, eq("IngressRoute")},
			{[]any{"spec", "routes", 1, "middlewares", 0, "name"}, eq("moat-forward-auth")},
			{[]any{"spec", "routes", 1, "middlewares", 1, "name"}, eq("cookies-stay-with-moat")},
		}},
		{"envoy", 0, []want{
			{append(append([]any{}, authz...), "path_prefix"), eq("/_moat/ext-authz")},
			{append(append([]any{}, authz...), "server_uri", "cluster"), eq("moat_forward_auth")},
			{append(append([]any{}, authz...), "authorization_request", "allowed_headers", "patterns"), has("exact:cookie", "exact:x-csrf", "exact:origin", "prefix:sec-fetch-")},
			{append(append([]any{}, authz...), "authorization_response", "allowed_upstream_headers", "patterns"), has("exact:authorization", "exact:x-moat-subject")},
			{append(append([]any{}, vhost...), 0, "match", "prefix"), eq("/auth/")},
			{append(append([]any{}, vhost...), 0, "typed_per_filter_config", "envoy.filters.http.ext_authz", "disabled"), eq("true")},
			{append(append([]any{}, vhost...), 1, "request_headers_to_remove"), has("cookie")},
			{append(append([]any{}, vhost...), 1, "response_headers_to_remove"), has("set-cookie")},
		}},
		{"istio", 0, []want{
			{[]any{"meshConfig", "extensionProviders", 0, "envoyExtAuthzHttp", "pathPrefix"}, eq("/_moat/ext-authz")},
			{[]any{"meshConfig", "extensionProviders", 0, "envoyExtAuthzHttp", "port"}, eq("4003")},
			{[]any{"meshConfig", "extensionProviders", 0, "envoyExtAuthzHttp", "includeRequestHeadersInCheck"}, has("cookie", "x-csrf", "origin", "sec-fetch-site")},
			{[]any{"meshConfig", "extensionProviders", 0, "envoyExtAuthzHttp", "headersToUpstreamOnAllow"}, has("authorization", "x-moat-subject")},
		}},
		{"istio", 1, []want{
			{[]any{"spec", "action"}, eq("CUSTOM")},
			{[]any{"spec", "provider", "name"}, eq("moat")},
		}},
	} {
		docs := yamlDocs(t, c.block)
		if c.doc >= len(docs) {
			t.Errorf("%s: %d documents, want more than %d", c.block, len(docs), c.doc)
			continue
		}
		for _, w := range c.wants {
			v, err := dig(docs[c.doc], w.path...)
			if err == nil {
				err = w.check(v)
			}
			if err != nil {
				t.Errorf("%s doc %d %v: %v", c.block, c.doc, w.path, err)
			}
		}
	}
	// No grant header may go back to the browser.
	lacks := func(v any) error {
		for _, h := range strs(v) {
			if strings.HasSuffix(h, "authorization") || strings.HasSuffix(h, "x-moat-subject") {
				return fmt.Errorf("%v sends a grant header to the browser", v)
			}
		}
		return nil
	}
	for _, c := range []struct {
		block string
		path  []any
	}{
		{"envoy", append(append([]any{}, authz...), "authorization_response", "allowed_client_headers", "patterns")},
		{"istio", []any{"meshConfig", "extensionProviders", 0, "envoyExtAuthzHttp", "headersToDownstreamOnDeny"}},
	} {
		v, err := dig(yamlDocs(t, c.block)[0], c.path...)
		if err == nil {
			err = lacks(v)
		}
		if err != nil {
			t.Errorf("%s %v: %v", c.block, c.path, err)
		}
	}
}

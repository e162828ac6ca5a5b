package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// defaultForwardHeaders are the request headers every route forwards: the
// end-to-end headers a browser's API call needs (RFC 9110 §12 content
// negotiation, §13 conditional requests, §14 ranges; RFC 9111 §5.2 cache
// directives; W3C Trace Context and Baggage; moat's request ID; the user
// agent) and the WebSocket handshake's (RFC 6455 §4.1). Origin is among
// them: the browser sets it, moat has checked it (CSRF rules), and WebSocket
// servers refuse handshakes without it (x/net/websocket). Connection, Upgrade
// and Te reach Rewrite only as httputil.ReverseProxy rebuilt them for an
// upgrade or for trailers. Every other header the browser sent is dropped:
// an allow-list, because the headers upstream frameworks give meaning to
// (method overrides, routing, client-IP and identity headers) cannot all
// be listed.
var defaultForwardHeaders = []string{
	"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
	"Content-Type", "Content-Length", "Content-Encoding",
	"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range", "Range",
	"Cache-Control", "Pragma",
	"Traceparent", "Tracestate", "Baggage",
	"X-Request-Id", "User-Agent",
	"Origin",
	"Connection", "Upgrade", "Te",
	"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions",
}

// neverForward are headers no route may add to its forward list, in lower
// case: credentials for moat, hop-by-hop headers, and headers upstream
// frameworks or auth proxies trust to say where the request came from, who
// sent it, which method or path it has, or where it should go.
var neverForward = map[string]string{
	"cookie": "the browser's cookies are moat's", "cookie2": "the browser's cookies are moat's",
	"authorization": "moat sets it (token: user) or removes it", "proxy-authorization": "a credential for moat",
	"host":      "the upstream's host comes from the route",
	"forwarded": "a forwarding claim", "via": "a forwarding claim",
	"connection": "hop-by-hop", "keep-alive": "hop-by-hop", "proxy-connection": "hop-by-hop",
	"te": "hop-by-hop", "trailer": "hop-by-hop", "transfer-encoding": "hop-by-hop", "upgrade": "hop-by-hop",
	"expect":                 "hop-by-hop in effect: moat does not relay 100-continue",
	"x-http-method-override": "a method override defeats routes[].methods", "x-method-override": "a method override defeats routes[].methods",
	"x-http-method": "a method override defeats routes[].methods",
	"x-rewrite-url": "a path override", "x-host": "a routing header", "x-forwarded": "a forwarding claim",
	"x-real-ip": "a client-IP claim", "x-client-ip": "a client-IP claim", "client-ip": "a client-IP claim",
	"true-client-ip": "a client-IP claim", "cf-connecting-ip": "a client-IP claim", "cf-connecting-ipv6": "a client-IP claim",
	"x-cluster-client-ip": "a client-IP claim", "fastly-client-ip": "a client-IP claim", "fly-client-ip": "a client-IP claim",
	"x-azure-clientip": "a client-IP claim", "x-azure-socketip": "a client-IP claim", "x-appengine-user-ip": "a client-IP claim",
	"x-envoy-external-address": "a client-IP claim",
	"remote-user":              "an identity claim", "remote-email": "an identity claim", "remote-groups": "an identity claim",
	"remote-name": "an identity claim", "x-remote-user": "an identity claim", "x-user": "an identity claim",
	"x-user-id": "an identity claim", "x-email": "an identity claim", "x-auth-user": "an identity claim",
	"x-goog-iap-jwt-assertion": "an identity claim", "cf-access-jwt-assertion": "an identity claim",
	"x-csrf": "moat's own CSRF header",
	"dpop":   "moat signs the proofs of its DPoP-bound tokens (RFC 9449); the browser never controls one",
}

// neverForwardPrefixes extend neverForward to header families.
var neverForwardPrefixes = []struct{ prefix, why string }{
	{"x-forwarded-", "a forwarding claim"},
	{"x-original-", "a routing or path override"},
	{"x-envoy-", "an Envoy routing header"},
	{"x-auth-request-", "an identity claim (oauth2-proxy)"},
	{"x-amzn-oidc-", "an identity claim (AWS ALB)"},
	{"x-ms-client-principal", "an identity claim (Azure App Service)"},
	{"x-ms-token-", "a token (Azure App Service)"},
	{"x-goog-authenticated-user-", "an identity claim (Google IAP)"},
	{"cf-access-", "an identity claim (Cloudflare Access)"},
	{"x-webauth-", "an identity claim (Grafana and others)"},
	{"x-pomerium-", "an identity claim (Pomerium)"},
	{"x-vouch-", "an identity claim (Vouch Proxy)"},
	{"proxy-", "a header for proxies"},
}

// CheckForwardHeader returns why name may not be in routes[].forward_headers,
// or "" when it may.
func CheckForwardHeader(name string) string {
	if !httpguts.ValidHeaderFieldName(name) {
		return "is not a header name"
	}
	lower := strings.ToLower(name)
	if why, ok := neverForward[lower]; ok {
		return "must never reach an upstream: " + why
	}
	for _, p := range neverForwardPrefixes {
		if strings.HasPrefix(lower, p.prefix) {
			return "must never reach an upstream: " + p.why
		}
	}
	return ""
}

// forwardSet returns the canonical names a route forwards: the defaults
// and the route's own (already validated).
func forwardSet(extra []string) map[string]bool {
	m := make(map[string]bool, len(defaultForwardHeaders)+len(extra))
	for _, h := range defaultForwardHeaders {
		m[http.CanonicalHeaderKey(h)] = true
	}
	for _, h := range extra {
		if CheckForwardHeader(h) == "" {
			m[http.CanonicalHeaderKey(h)] = true
		}
	}
	return m
}

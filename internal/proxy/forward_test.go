package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// hostileHeaders are request headers a browser (or script in it) can send
// that upstream frameworks and auth-proxy-aware apps give meaning to.
var hostileHeaders = []string{
	"Cookie", "Authorization", "Proxy-Authorization", "Forwarded", "Via",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Access-Token", "X-Forwarded-Client-Cert",
	"X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method",
	"X-Original-URL", "X-Original-Method", "X-Original-Host", "X-Original-Forwarded-For", "X-Rewrite-URL", "X-Host",
	"X-Envoy-Original-Path", "X-Envoy-External-Address", "X-Envoy-Internal",
	"X-Real-IP", "X-Client-IP", "Client-IP", "True-Client-IP", "CF-Connecting-IP", "X-Cluster-Client-IP", "Fastly-Client-IP",
	"Remote-User", "Remote-Groups", "Remote-Email", "X-Remote-User", "X-User", "X-User-Id",
	"X-Webauth-User", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Access-Token",
	"X-Amzn-Oidc-Data", "X-Amzn-Oidc-Identity", "X-Amzn-Oidc-Accesstoken",
	"X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-TOKEN-AAD-ACCESS-TOKEN",
	"X-Goog-Authenticated-User-Email", "X-Goog-Authenticated-User-Id", "X-Goog-IAP-JWT-Assertion",
	"Cf-Access-Jwt-Assertion", "Cf-Access-Authenticated-User-Email", "X-Pomerium-Jwt-Assertion",
	"X-CSRF", "Referer", "Sec-Fetch-Site", "Expect", "X-Unknown-App-Header",
}

// Only the default end-to-end headers and the route's forward_headers reach
// the upstream; every hostile header is dropped, under its canonical name or
// any other spelling of its key.
func TestForwardHeadersAllowList(t *testing.T) {
	var seen http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/")
	table := New([]Route{
		{Prefix: "/api/", Upstream: u, Token: true},
		// An extra that validation would refuse is ignored here too.
		{Prefix: "/app/", Upstream: u, Token: true, ForwardHeaders: []string{"x-tenant", "X-Forwarded-For", "Remote-User"}},
	}, Options{Logger: slog.New(slog.DiscardHandler)})
	defer table.CloseIdleConnections()

	allowed := map[string]string{
		"Accept": "application/json", "Accept-Language": "de", "Accept-Encoding": "identity", "Accept-Charset": "utf-8",
		"Content-Type": "application/json", "Content-Encoding": "identity",
		"If-None-Match": `"v1"`, "If-Match": `"v1"`, "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT",
		"If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT", "If-Range": `"v1"`, "Range": "bytes=0-9",
		"Cache-Control": "no-cache", "Pragma": "no-cache",
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Tracestate": "a=b", "Baggage": "k=v",
		"X-Request-Id": "req-1", "User-Agent": "test-browser", "Origin": "https://app.example.com",
	}
	for _, prefix := range []string{"/api/", "/app/"} {
		for _, spell := range []func(string) string{http.CanonicalHeaderKey, func(s string) string { return s }} {
			r := httptest.NewRequest(http.MethodPost, prefix+"x", nil).WithContext(WithToken(t.Context(), "tok", nil))
			for k, v := range allowed {
				r.Header.Set(k, v)
			}
			for _, h := range hostileHeaders {
				r.Header[spell(h)] = []string{"hostile"}
			}
			// Keys net/http leaves as sent: frameworks fold "_" to "-" (CGI/WSGI).
			r.Header["x_forwarded_for"] = []string{"hostile"}
			r.Header["X_http_method_override"] = []string{"hostile"}
			r.Header["X-Tenant"] = []string{"t1"}
			_, h, _ := table.Match(prefix + "x")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("%s: %d", prefix, w.Code)
			}
			for k, v := range seen {
				if k == "Authorization" {
					if len(v) != 1 || v[0] != "Bearer tok" {
						t.Errorf("%s: Authorization %q", prefix, v)
					}
					continue
				}
				if k == "X-Tenant" && prefix == "/app/" {
					continue
				}
				if _, ok := allowed[k]; !ok && k != "Content-Length" && k != "Accept-Encoding" {
					t.Errorf("%s: upstream saw %s: %q", prefix, k, v)
				}
			}
			for k, v := range allowed {
				if got := seen.Get(k); got != v {
					t.Errorf("%s: %s = %q, want %q", prefix, k, got, v)
				}
			}
			if got := seen.Get("X-Tenant"); (got == "t1") != (prefix == "/app/") {
				t.Errorf("%s: X-Tenant %q", prefix, got)
			}
		}
	}
}

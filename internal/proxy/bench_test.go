package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkForwardBrowserHeaders forwards a request carrying the headers
// Chromium sends on a fetch() API call (cookie, client hints, fetch
// metadata, ...) through a route, to measure the request-header filter on a
// realistic header set.
//
//	go test -run '^$' -bench ForwardBrowserHeaders -benchmem ./internal/proxy/
func BenchmarkForwardBrowserHeaders(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/")
	table := New([]Route{{Prefix: "/api/", Upstream: u, Token: true}}, Options{Logger: slog.New(slog.DiscardHandler)})
	defer table.CloseIdleConnections()
	_, h, _ := table.Match("/api/items")
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "/api/items", nil)
			r.Header = chromiumHeaders.Clone()
			r = r.WithContext(WithToken(r.Context(), "token", nil))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// chromiumHeaders are what Chromium sends on a same-origin fetch() with
// the session cookie and X-CSRF.
var chromiumHeaders = http.Header{
	"Accept":             {"application/json"},
	"Accept-Encoding":    {"gzip, deflate, br, zstd"},
	"Accept-Language":    {"en-US,en;q=0.9"},
	"Connection":         {"keep-alive"},
	"Cookie":             {"__Host-Http-moat=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4"},
	"Priority":           {"u=1, i"},
	"Referer":            {"https://app.example.com/orders"},
	"Sec-Ch-Ua":          {`"Chromium";v="131", "Not_A Brand";v="24"`},
	"Sec-Ch-Ua-Mobile":   {"?0"},
	"Sec-Ch-Ua-Platform": {`"Linux"`},
	"Sec-Fetch-Dest":     {"empty"},
	"Sec-Fetch-Mode":     {"cors"},
	"Sec-Fetch-Site":     {"same-origin"},
	"User-Agent":         {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	"X-Csrf":             {"1"},
	"X-Request-Id":       {"0123456789abcdef01234567"},
}

// BenchmarkHeaderFilter measures the request-header filter alone on
// chromiumHeaders: the allow-list (rewrite's loop) against the deny-list it
// replaced (hopHeaderSet plus every X-Forwarded-*, copied here), in one run.
//
//	go test -run '^$' -bench HeaderFilter -benchmem ./internal/proxy/
func BenchmarkHeaderFilter(b *testing.B) {
	u, _ := url.Parse("http://127.0.0.1:1/")
	c := New([]Route{{Prefix: "/api/", Upstream: u}}, Options{Logger: slog.New(slog.DiscardHandler)}).routes[0]
	deny := map[string]bool{}
	for _, h := range []string{"Cookie", "Authorization", "Proxy-Authorization",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "X-Forwarded-Client-Cert", "X-Original-Url", "X-Rewrite-Url",
		"X-User-Id", "X-User", "X-Remote-User", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Forwarded-User",
		"X-Forwarded-Email", "X-Forwarded-Access-Token", "X-Csrf"} {
		deny[http.CanonicalHeaderKey(h)] = true
	}
	filters := map[string]func(http.Header){
		"allowlist": func(h http.Header) {
			for name := range h {
				if !c.forward[name] {
					delete(h, name)
				}
			}
		},
		"denylist-before": func(h http.Header) {
			for name := range h {
				if deny[name] || strings.HasPrefix(name, "X-Forwarded-") {
					delete(h, name)
				}
			}
		},
	}
	for _, name := range []string{"denylist-before", "allowlist"} {
		f := filters[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			h := make(http.Header, len(chromiumHeaders))
			for b.Loop() {
				for k, v := range chromiumHeaders {
					h[k] = v
				}
				f(h)
			}
		})
	}
}

// BenchmarkRest measures the path checks on an ASCII path (the fast path)
// and on a path with a non-ASCII segment (NFKC normalisation).
//
//	go test -run '^$' -bench Rest -benchmem ./internal/proxy/
func BenchmarkRest(b *testing.B) {
	for name, raw := range map[string]string{"ascii": "/api/orders/12345/items", "non-ascii": "/api/caf%C3%A9/items"} {
		u, _ := url.Parse(raw)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Rest(u, "/api/"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

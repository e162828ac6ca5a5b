package gateway_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

func TestRateLimits(t *testing.T) {
	t.Run("login per IP", func(t *testing.T) {
		e := newEnv(t, func(c *config.Config) { c.Limits.Login = config.Limit{Rate: 0.01, Burst: 3} })
		for i := range 3 {
			if r := e.browser().get("/auth/login"); r.StatusCode != http.StatusFound {
				t.Fatalf("login %d: %s", i, r.Status)
			}
		}
		r := e.browser().get("/auth/login")
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Errorf("4th login: %s Retry-After=%q", r.Status, r.Header.Get("Retry-After"))
		}
	})
	t.Run("per IP, and X-Forwarded-For only from trusted proxies", func(t *testing.T) {
		e := newEnv(t, func(c *config.Config) { c.Limits.PerIP = config.Limit{Rate: 0.01, Burst: 5} })
		b := e.browser()
		for range 5 {
			b.get("/auth/checksession", "X-Forwarded-For", fmt.Sprintf("10.0.0.%d", time.Now().Nanosecond()%250))
		}
		r := b.get("/auth/checksession", "X-Forwarded-For", "10.9.9.9")
		if r.StatusCode != http.StatusTooManyRequests || r.json(t)["error"] != "rate_limited" {
			t.Errorf("6th request with a spoofed X-Forwarded-For: %s %s", r.Status, r.body)
		}
		if r := b.get("/healthz"); r.StatusCode != http.StatusOK {
			t.Errorf("health checks are limited: %s", r.Status)
		}

		e = newEnv(t, func(c *config.Config) {
			c.Limits.PerIP = config.Limit{Rate: 0.01, Burst: 2}
			c.Server.TrustedProxies = []string{"127.0.0.1/32"}
		})
		b = e.browser()
		for i := range 6 { // three clients behind the proxy, two requests each
			if r := b.get("/auth/checksession", "X-Forwarded-For", fmt.Sprintf("6.6.6.6, 203.0.113.%d", i%3)); r.StatusCode != http.StatusOK {
				t.Errorf("client %d behind a trusted proxy: %s", i%3, r.Status)
			}
		}
		if r := b.get("/auth/checksession", "X-Forwarded-For", "203.0.113.0"); r.StatusCode != http.StatusTooManyRequests {
			t.Errorf("third request of one client: %s", r.Status)
		}
	})
	t.Run("per session", func(t *testing.T) {
		e := newEnv(t, func(c *config.Config) { c.Limits.PerSession = config.Limit{Rate: 0.01, Burst: 3} })
		b := e.browser()
		b.login("/")
		for range 3 {
			b.api("GET", "/resource/api/x")
		}
		if r := b.api("GET", "/resource/api/x"); r.StatusCode != http.StatusTooManyRequests {
			t.Errorf("4th call: %s", r.Status)
		}
		if n := len(e.upstream.requests()); n > 3 {
			t.Errorf("upstream saw %d calls", n)
		}
	})
}

func TestMethodAllowListAndBodyLimits(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Routes[0].Methods = []string{"GET"}
		c.Routes[1].MaxBodyBytes = 1024
		c.Server.MaxBodyBytes = 2048
	})
	b := e.browser()
	b.login("/")
	r := b.api("POST", "/resource/api/x")
	if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET" {
		t.Errorf("POST on a GET route: %s Allow=%q", r.Status, r.Header.Get("Allow"))
	}
	if len(e.upstream.requests()) != 0 {
		t.Error("a refused method reached the upstream")
	}
	big := strings.Repeat("x", 4096)
	r = b.send("POST", "/resource/api/public/x", strings.NewReader(big), csrf.HeaderName, "1", "Content-Type", "text/plain")
	if r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %s", r.Status)
	}
	// Without Content-Length (chunked) the limit still holds.
	req, _ := http.NewRequest("POST", e.url+"/resource/api/public/x", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set(csrf.HeaderName, "1")
	if r := b.do(req); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked body: %s %s", r.Status, r.body)
	}
	if r := b.send("POST", "/auth/logout", strings.NewReader(big), csrf.HeaderName, "1"); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body to /auth: %s", r.Status)
	}
}

// raw sends bytes on a fresh connection and returns what comes back
// until the server closes it or 3 s pass.
func raw(t *testing.T, e *env, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(conn, request)
	out, _ := io.ReadAll(conn)
	return string(out)
}

func TestHostileRequests(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Server.ReadHeaderTimeout = config.Duration(500 * time.Millisecond)
		c.Server.MaxHeaderBytes = 4096
		c.Routes[1].InsecureAllowSetCookie = true
	})
	b := e.browser()
	b.login("/")
	cookie := session.CookieName + "=" + b.sessionCookie().Value
	h := "Host: x\r\nX-CSRF: 1\r\nCookie: " + cookie + "\r\n"

	cases := []struct {
		name, req string
		check     func(t *testing.T, resp string)
	}{
		{"CRLF in query", "GET /resource/api/x?a=%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n", func(t *testing.T, resp string) {
			if strings.Contains(resp, "\r\nSet-Cookie: evil") {
				t.Error("header injected through the query")
			}
		}},
		{"CR in a header value", "GET /resource/api/x HTTP/1.1\r\n" + h + "X-A: a\rSet-Cookie: evil=1\r\nConnection: close\r\n\r\n", func(t *testing.T, resp string) {
			if !strings.HasPrefix(resp, "HTTP/1.1 400") {
				t.Errorf("got %.40q, want 400", resp)
			}
		}},
		{"CL and TE together", "POST /resource/api/public/x HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /resource/api/public/smuggled HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\n\r\n", func(t *testing.T, resp string) {
			if n := strings.Count(resp, "HTTP/1.1 "); n != 1 {
				t.Errorf("%d responses on a connection that carried a chunked request with Content-Length", n)
			}
		}},
		{"two Content-Lengths", "POST /resource/api/public/x HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nContent-Length: 4\r\nContent-Length: 40\r\nConnection: close\r\n\r\nabcd", func(t *testing.T, resp string) {
			if !strings.HasPrefix(resp, "HTTP/1.1 400") {
				t.Errorf("got %.40q, want 400", resp)
			}
		}},
		{"oversized headers", "GET /resource/api/x HTTP/1.1\r\n" + h + "X-Big: " + strings.Repeat("a", 8192) + "\r\nConnection: close\r\n\r\n", func(t *testing.T, resp string) {
			if !strings.HasPrefix(resp, "HTTP/1.1 431") {
				t.Errorf("got %.40q, want 431", resp)
			}
		}},
		{"absolute-form target to another host", "GET http://evil.example/resource/api/x HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n", nil},
		{"obsolete line folding", "GET /resource/api/x HTTP/1.1\r\n" + h + "X-A: a\r\n Authorization: Bearer evil\r\nConnection: close\r\n\r\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := raw(t, e, tc.req)
			if tc.check != nil {
				tc.check(t, resp)
			}
		})
	}
	for _, r := range e.upstream.requests() {
		if strings.Contains(r.URL.Path, "smuggled") || r.Host != strings.TrimPrefix(e.upstream.URL, "http://") {
			t.Errorf("upstream received %s %s (Host %s)", r.Method, r.URL, r.Host)
		}
		if auth := r.Header.Get("Authorization"); auth == "Bearer evil" {
			t.Error("a folded Authorization header reached the upstream")
		}
	}

	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		go func() {
			for range 20 {
				time.Sleep(100 * time.Millisecond)
				if _, err := io.WriteString(conn, "X-Slow: 1\r\n"); err != nil {
					return
				}
			}
		}()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(conn)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a slow client held its connection for %v", d)
		}
		if r := b.get("/healthz"); r.StatusCode != http.StatusOK {
			t.Error("moat unhealthy after a slow client")
		}
	})
}

func TestUpstreamSetCookieAllowedButNeverMoats(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "app=1; Path=/")
		w.Header().Add("Set-Cookie", session.CookieName+"=evil; Path=/; Secure; HttpOnly")
		w.Header().Add("Set-Cookie", "__host-moat-login=evil; Path=/")
	}))
	defer api.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/cookies/", Upstream: api.URL + "/", Token: config.TokenNone, InsecureAllowSetCookie: true})
	})
	r := e.browser().api("GET", "/cookies/x")
	got := r.Header.Values("Set-Cookie")
	if len(got) != 1 || got[0] != "app=1; Path=/" {
		t.Errorf("Set-Cookie passed = %q", got)
	}
}

// A misbehaving IdP costs bounded time, gives the right status, creates no
// session and leaves no goroutine behind.
func TestMisbehavingIdP(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("garbage discovery", func(t *testing.T) {
		idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{not json") }))
		defer idp.Close()
		e := newEnv(t, func(c *config.Config) { c.OIDC.Issuer = idp.URL })
		b := e.browser()
		if r := b.get("/auth/login"); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("login: %s", r.Status)
		}
		if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz: %s", r.Status)
		}
	})
	t.Run("hanging token endpoint", func(t *testing.T) {
		e := newEnv(t, func(b *oidctest.Behavior) { b.TokenDelay = time.Minute })
		start := time.Now()
		r := e.browser().login("/")
		if r.StatusCode != http.StatusServiceUnavailable || time.Since(start) > 6*time.Second {
			t.Errorf("login against a hanging IdP: %s after %v", r.Status, time.Since(start))
		}
	})
	t.Run("huge JWKS", func(t *testing.T) {
		e := newEnv(t, func(b *oidctest.Behavior) { b.JWKSPadding = 4 << 20 })
		start := time.Now()
		b := e.browser()
		r := b.login("/")
		if r.StatusCode < 400 || b.sessionCookie() != nil || time.Since(start) > 5*time.Second {
			t.Errorf("login with a 4 MiB JWKS: %s after %v", r.Status, time.Since(start))
		}
	})
	for _, endpoint := range []string{"/token", "/jwks"} {
		t.Run("garbage JSON at "+endpoint, func(t *testing.T) {
			e := newEnv(t, func(b *oidctest.Behavior) { b.Garbage = endpoint })
			b := e.browser()
			if r := b.login("/"); r.StatusCode < 400 || b.sessionCookie() != nil {
				t.Errorf("login: %s", r.Status)
			}
		})
	}
	t.Run("garbage JSON at /userinfo", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		e.op.Set(func(b *oidctest.Behavior) { b.Garbage = "/userinfo" })
		if r := b.api("GET", "/auth/userinfo"); r.StatusCode < 500 {
			t.Errorf("userinfo: %s %s", r.Status, r.body)
		}
		if !loggedIn(t, b) {
			t.Error("a broken UserInfo answer logged the user out")
		}
	})
	t.Run("500 at the token endpoint", func(t *testing.T) {
		e := newEnv(t, func(b *oidctest.Behavior) { b.TokenStatus = http.StatusInternalServerError })
		if r := e.browser().login("/"); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("login: %s", r.Status)
		}
	})
	noGoroutinesLeft(t, before) // the subtests' cleanups have stopped every moat and OP
}

// noGoroutinesLeft fails t if more than a few goroutines outlive what
// started after before was counted, allowing 5 s for them to wind down.
func noGoroutinesLeft(t *testing.T, before int) {
	t.Helper()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestMisbehavingUpstreamsAndNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("upstreams", func(t *testing.T) {
		var huge atomic.Int64
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/reset":
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			case "/huge":
				chunk := make([]byte, 64<<10)
				for range 512 { // 32 MiB
					n, err := w.Write(chunk)
					huge.Add(int64(n))
					if err != nil {
						return
					}
				}
			case "/hang":
				<-r.Context().Done()
			}
		}))
		defer api.Close()
		e := newEnv(t, func(c *config.Config) {
			c.Routes = append(c.Routes, config.Route{Prefix: "/bad/", Upstream: api.URL + "/", Token: config.TokenNone, Timeout: config.Duration(300 * time.Millisecond)})
		})
		b := e.browser()
		if r := b.api("GET", "/bad/reset"); r.StatusCode != http.StatusBadGateway {
			t.Errorf("reset: %s", r.Status)
		}
		if r := b.api("GET", "/bad/hang"); r.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("hang: %s", r.Status)
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		req, _ := http.NewRequest("GET", e.url+"/bad/huge", nil)
		req.Header.Set(csrf.HeaderName, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, bufio.NewReaderSize(resp.Body, 4096))
		resp.Body.Close()
		runtime.ReadMemStats(&m1)
		if n != 32<<20 {
			t.Errorf("huge response: %d bytes arrived", n)
		}
		if grew := int64(m1.HeapInuse) - int64(m0.HeapInuse); grew > 16<<20 {
			t.Errorf("a 32 MiB response grew the heap by %d bytes: it was buffered", grew)
		}
	}) // the subtest's cleanups have stopped moat, the OP and the upstreams
	noGoroutinesLeft(t, before)
}

// serverCAFile writes srv's certificate (the CA moat must trust) as a PEM
// file and returns its path.
func serverCAFile(t *testing.T, srv *httptest.Server) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	return p
}

func TestUpstreamTLS(t *testing.T) {
	var seen atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1); io.WriteString(w, "ok") })
	plain := httptest.NewTLSServer(handler)
	defer plain.Close()
	certPath, keyPath, cert := oidctest.WriteClientCert(t)
	mtls := httptest.NewUnstartedServer(handler)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	mtls.StartTLS()
	defer mtls.Close()

	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/untrusted/", Upstream: plain.URL + "/"},
			config.Route{Prefix: "/trusted/", Upstream: plain.URL + "/", CAFile: serverCAFile(t, plain)},
			config.Route{Prefix: "/nocert/", Upstream: mtls.URL + "/", CAFile: serverCAFile(t, mtls)},
			config.Route{Prefix: "/mtls/", Upstream: mtls.URL + "/", CAFile: serverCAFile(t, mtls), ClientCertFile: certPath, ClientKeyFile: keyPath},
		)
	})
	b := e.browser()
	b.login("/")
	if r := b.api("GET", "/untrusted/x"); r.StatusCode != http.StatusBadGateway {
		t.Errorf("unknown CA: %s", r.Status)
	}
	if r := b.api("GET", "/nocert/x"); r.StatusCode != http.StatusBadGateway {
		t.Errorf("mTLS without a client certificate: %s", r.Status)
	}
	if seen.Load() != 0 {
		t.Fatal("a request (and its token) reached an upstream whose TLS failed")
	}
	if r := b.api("GET", "/trusted/x"); r.StatusCode != http.StatusOK {
		t.Errorf("ca_file: %s %s", r.Status, r.body)
	}
	if r := b.api("GET", "/mtls/x"); r.StatusCode != http.StatusOK {
		t.Errorf("mTLS: %s %s", r.Status, r.body)
	}
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeKey(t *testing.T, path string, key any) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pemEncode("PRIVATE KEY", der), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIPv6ClientsKeyedByPrefix: one subscriber holds a whole /64, so 500
// logins from 500 addresses of one /64 meet the login limit (here 1/s,
// burst 20) like 500 from one IPv4 address, while clients in different
// /64s do not share a bucket. Entries carry ports, as some load balancers
// write them.
func TestIPv6ClientsKeyedByPrefix(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Limits.Login = config.Limit{Rate: 1, Burst: 20}
		c.Limits.PerIP = config.Limit{} // the defaults
		c.Server.TrustedProxies = []string{"127.0.0.1/32"}
	})
	b := e.browser()
	logins := func(format string) (ok, limited int) {
		for i := range 500 {
			switch r := b.get("/auth/login", "X-Forwarded-For", fmt.Sprintf(format, i)); r.StatusCode {
			case http.StatusFound:
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("login %d: %s %s", i, r.Status, r.body)
			}
		}
		return ok, limited
	}
	// The login bucket holds 20 and refills at 1/s: a slow machine may
	// let a few more through, never hundreds.
	if ok, limited := logins("[2001:db8:1:2::%x]:443"); ok > 40 || limited < 460 {
		t.Errorf("one /64: %d logins accepted, %d limited; want the /64 to share one bucket", ok, limited)
	}
	if ok, _ := logins("[2001:db8:2:%x::1]:443"); ok != 500 {
		t.Errorf("500 different /64s: %d logins accepted, want all", ok)
	}
	if ok, _ := logins("2001:db8:3:%x::1"); ok != 500 {
		t.Errorf("500 different /64s without ports: %d logins accepted, want all", ok)
	}

	e = newEnv(t, func(c *config.Config) {
		c.Limits.Login = config.Limit{Rate: 1, Burst: 20}
		c.Limits.IPv6Prefix = 128
		c.Server.TrustedProxies = []string{"127.0.0.1/32"}
	})
	b = e.browser()
	if ok, _ := logins("2001:db8:1:2::%x"); ok != 500 {
		t.Errorf("rate_limit.ipv6_prefix 128: %d of 500 addresses in one /64 logged in, want all", ok)
	}
}

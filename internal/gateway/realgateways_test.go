package gateway_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// docsBlock returns the code block that follows <!-- gateways_test: name -->
// in docs/gateways.md: the tests run what the page tells people to copy.
func docsBlock(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "gateways.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- gateways_test: " + regexp.QuoteMeta(name) + " -->\\s*```[a-z-]*\\n(.*?)```")
	m := re.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("docs/gateways.md has no block marked gateways_test: %s", name)
	}
	return string(m[1])
}

// replaceAll replaces each old with new in s in one pass, so a new
// address is never rewritten by a later pair (moat on 127.0.0.1:40039
// must not become the forward-auth port plus "9"), failing if an old is
// absent (the docs changed shape and the test would run something else).
func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the docs block no longer contains %q", pairs[i])
		}
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// addrs are where the docs' placeholders point in a test.
type addrs struct{ gateway, moat, fa, api string }

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess runs cmd until the test ends and waits until addr accepts
// connections.
func startProcess(t *testing.T, cmd *exec.Cmd, addr string, logs func() string) {
	t.Helper()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s\n%s", cmd.Path, out.String(), logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("%s exited: %s\n%s", cmd.Path, out.String(), logs())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %s", cmd.Path, addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startNginx(t *testing.T, a addrs) {
	dir := t.TempDir()
	block := replaceAll(t, docsBlock(t, "nginx"),
		"listen 80;", "listen "+a.gateway+";",
		"127.0.0.1:4001", a.moat, "127.0.0.1:4003", a.fa, "127.0.0.1:9000", a.api)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, block)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := func() string { b, _ := os.ReadFile(filepath.Join(dir, "error.log")); return string(b) }
	startProcess(t, exec.Command("nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log")), a.gateway, logs)
}

func startCaddy(t *testing.T, a addrs) {
	dir := t.TempDir()
	block := replaceAll(t, docsBlock(t, "caddy"),
		"app.example.com {", "http://"+a.gateway+" {",
		"127.0.0.1:4001", a.moat, "127.0.0.1:4003", a.fa, "127.0.0.1:9000", a.api)
	// Test-only globals: no admin endpoint (parallel runs would share its
	// port), nothing written outside the test's directory.
	conf := "{\n\tadmin off\n}\n\n" + block
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("caddy", "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	startProcess(t, cmd, a.gateway, func() string { return "" })
}

// TestRealGateways puts nginx and Caddy, configured with the blocks of
// docs/gateways.md, in front of moat's browser and forward-auth listeners
// and a recording upstream, and walks a user through them.
func TestRealGateways(t *testing.T) {
	for _, gw := range []struct {
		name, bin string
		start     func(*testing.T, addrs)
	}{
		{"nginx", "nginx", startNginx},
		{"caddy", "caddy", startCaddy},
	} {
		t.Run(gw.name, func(t *testing.T) {
			if _, err := exec.LookPath(gw.bin); err != nil {
				if os.Getenv("MOAT_TEST_REQUIRE_GATEWAYS") != "" {
					t.Fatalf("%s is not installed and MOAT_TEST_REQUIRE_GATEWAYS is set (apt-get install nginx-light caddy)", gw.bin)
				}
				t.Skipf("%s is not installed (apt-get install nginx-light caddy); set MOAT_TEST_REQUIRE_GATEWAYS=1 to make this a failure", gw.bin)
			}
			gwAddr := freePort(t)
			gwURL := "http://" + gwAddr
			f := newFAEnv(t,
				func(c *config.Config) {
					c.PublicURL = gwURL
					c.Server.TrustedProxies = []string{"127.0.0.1"}
					c.Routes = append(c.Routes,
						config.Route{Prefix: "/api/", Upstream: "http://127.0.0.1:1/api/"},
						config.Route{Prefix: "/api/read/", Upstream: "http://127.0.0.1:1/read/", Methods: []string{"GET"}},
						config.Route{Prefix: "/api/public/", Upstream: "http://127.0.0.1:1/public/", Token: config.TokenNone},
					)
				},
				func(p *oidctest.Provider) { p.RedirectURI = gwURL + "/auth/callback" },
			)
			f.url = gwURL // the browser reaches everything through the gateway
			gw.start(t, addrs{gateway: gwAddr, moat: f.cfg.Listen, fa: strings.TrimPrefix(f.fa.URL, "http://"),
				api: strings.TrimPrefix(f.upstream.URL, "http://")})
			walkThroughGateway(t, f, gw.name)
		})
	}
}

func walkThroughGateway(t *testing.T, f *faEnv, name string) {
	up := f.upstream
	last := func() *http.Request {
		reqs := up.requests()
		if len(reqs) == 0 {
			t.Fatal("nothing reached the upstream")
		}
		return reqs[len(reqs)-1]
	}
	wantRefusal := func(r *response, status int, code string) {
		t.Helper()
		if r.StatusCode != status || r.json(t)["error"] != code || r.Header.Get("Location") != "" {
			t.Fatalf("%s %s: %s %v %s, want %d %s", r.Request.Method, r.Request.URL.Path, r.Status, r.Header, r.body, status, code)
		}
	}

	// No session: moat's JSON 401, and nothing reaches the upstream.
	anon := f.browser()
	wantRefusal(anon.api("GET", "/api/items"), 401, "unauthenticated")
	if n := len(up.requests()); n != 0 {
		t.Fatalf("upstream reached %d times without a session", n)
	}

	// Login through the gateway.
	b := f.browser()
	if r := b.login("/"); r.StatusCode != http.StatusFound || b.sessionCookie() == nil {
		t.Fatalf("login through the gateway: %s %s", r.Status, r.body)
	}

	// An API call: the upstream gets alice's Bearer, no cookie, the subject.
	r := b.api("GET", "/api/items?x=1")
	if r.StatusCode != 200 || r.json(t)["sub"] != "alice" {
		t.Fatalf("API call: %s %s", r.Status, r.body)
	}
	u := last()
	if sub, ok := f.op.ValidAccessToken(strings.TrimPrefix(u.Header.Get("Authorization"), "Bearer ")); !ok || sub != "alice" {
		t.Errorf("upstream Authorization = %q", u.Header.Get("Authorization"))
	}
	if u.Header.Get("Cookie") != "" || u.Header.Get("X-Moat-Subject") != "alice" || u.URL.RequestURI() != "/api/items?x=1" {
		t.Errorf("upstream saw %s Cookie=%q X-Moat-Subject=%q", u.URL, u.Header.Get("Cookie"), u.Header.Get("X-Moat-Subject"))
	}

	// CSRF: no X-CSRF, or a foreign origin.
	n := len(up.requests())
	wantRefusal(b.get("/api/items"), 403, "csrf")
	wantRefusal(b.send("POST", "/api/items", nil, "X-CSRF", "1", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"), 403, "csrf")
	// A method the route refuses: moat's 405, whatever the gateway's
	// auth module does with it.
	wantRefusal(b.api("DELETE", "/api/read/x"), 405, "method_not_allowed")
	// Forged convention headers cannot make moat judge another method or
	// path than the gateway's.
	fr := b.send("DELETE", "/api/read/x", nil, "X-CSRF", "1",
		"X-Original-Method", "GET", "X-Forwarded-Method", "GET", "X-Original-URI", "/api/read/x", "X-Forwarded-Uri", "/api/read/x")
	if fr.StatusCode < 400 {
		t.Errorf("forged method headers: %s", fr.Status)
	}
	fr = b.send("GET", "/api/items", nil, "X-CSRF", "1", "X-Original-URI", "/api/public/x", "X-Forwarded-Uri", "/api/public/x")
	if fr.StatusCode < 400 {
		t.Errorf("forged target headers: %s", fr.Status)
	}
	if got := len(up.requests()); got != n {
		t.Fatalf("refused calls reached the upstream: %d", got-n)
	}

	// A route without token: the browser's own Authorization and identity
	// header do not reach the upstream.
	if r := b.send("GET", "/api/public/x", nil, "X-CSRF", "1", "Authorization", "Bearer forged", "X-Moat-Subject", "mallory"); r.StatusCode != 200 {
		t.Fatalf("public route: %s %s", r.Status, r.body)
	}
	if u := last(); u.Header.Get("Authorization") != "" || u.Header.Get("X-Moat-Subject") != "" || u.Header.Get("Cookie") != "" {
		t.Errorf("public route upstream saw Authorization=%q X-Moat-Subject=%q Cookie=%q",
			u.Header.Get("Authorization"), u.Header.Get("X-Moat-Subject"), u.Header.Get("Cookie"))
	}

	// The upstream's Set-Cookie (the recording upstream plants moat's own
	// cookie name) never reaches the browser.
	if c := b.sessionCookie(); c == nil || c.Value == "planted" || strings.Contains(b.headers.String(), "planted") {
		t.Fatal("an upstream's Set-Cookie reached the browser through the gateway")
	}

	// Refresh after expiry, once.
	first := f.accessToken(b.sessionCookie())
	f.expireAccessToken(b.sessionCookie())
	if r := b.api("GET", "/api/items"); r.StatusCode != 200 || r.json(t)["sub"] != "alice" {
		t.Fatalf("after expiry: %s %s", r.Status, r.body)
	}
	if got := strings.TrimPrefix(last().Header.Get("Authorization"), "Bearer "); got == first || f.op.Grants("refresh_token") != 1 {
		t.Errorf("no refresh: same token %v, %d refresh grants", got == first, f.op.Grants("refresh_token"))
	}

	// Logout through the gateway ends API access.
	if r := b.api("POST", "/auth/logout"); r.StatusCode != 200 {
		t.Fatalf("logout: %s %s", r.Status, r.body)
	}
	wantRefusal(b.api("GET", "/api/items"), 401, "unauthenticated")

	// moat's forward-auth unreachable: the gateway fails closed.
	b2 := f.browser()
	b2.login("/")
	n = len(up.requests())
	f.fa.Close()
	r = b2.api("GET", "/api/items")
	if r.StatusCode < 500 || len(up.requests()) != n {
		t.Errorf("forward-auth down: %s, upstream reached %d times", r.Status, len(up.requests())-n)
	}
	if name == "nginx" && (r.StatusCode != 503 || r.json(t)["error"] != "unavailable") {
		t.Errorf("nginx with forward-auth down: %s %s, want the config's 503 unavailable", r.Status, r.body)
	}

	// No token ever reached the browser, in any header or body.
	for _, tok := range append(f.op.IssuedTokens(), f.op.ClientSecret) {
		for _, br := range []*browser{b, anon, b2} {
			if strings.Contains(br.headers.String(), tok) || strings.Contains(br.bodies.String(), tok) {
				t.Errorf("the browser received a token or the client secret: %.12s...", tok)
			}
		}
	}
}

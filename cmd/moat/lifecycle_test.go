package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// envRunMain makes the test binary run moat's main instead of the tests,
// so that a test can start moat as a process of its own and signal it.
const envRunMain = "MOAT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startProcess runs `moat serve --config` as a child process on a free
// port, waits until it answers, and returns it with its stderr.
func startProcess(t *testing.T, configBody func(addr string) string) (addr string, cmd *exec.Cmd, logs *logtest.Buffer) {
	t.Helper()
	addr = freeAddr(t)
	path := writeFile(t, configBody(addr))
	logs = &logtest.Buffer{}
	cmd = exec.Command(os.Args[0], "serve", "--config", path)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHealthy(t, addr, logs, 10*time.Second)
	return addr, cmd, logs
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHealthy waits until moat at addr answers /healthz.
func waitHealthy(t *testing.T, addr string, logs *logtest.Buffer, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServe runs `moat serve` in-process on a free port and waits until
// it answers. Cancelling the returned context is what SIGTERM does.
func startServe(t *testing.T, configBody func(addr string) string) (addr string, cancel context.CancelFunc, done <-chan error, logs *logtest.Buffer, path string) {
	t.Helper()
	addr = freeAddr(t)
	path = writeFile(t, configBody(addr))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	logs = &logtest.Buffer{}
	go func() { errc <- run(ctx, []string{"serve", "--config", path}, &bytes.Buffer{}, logs) }()
	t.Cleanup(cancel)
	waitHealthy(t, addr, logs, 5*time.Second)
	return addr, cancel, errc, logs, path
}

func TestSIGTERMDrainsStreams(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1/auth/callback")
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(200 * time.Millisecond)
		}
	}))
	defer sse.Close()
	addr, moat, logs := startProcess(t, func(addr string) string {
		return fmt.Sprintf(`
listen: %q
public_url: "http://%s"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
server: {shutdown_grace: 5s}
routes: [{prefix: "/events/", upstream: %q, token: none}]
`, addr, addr, op.Issuer, sse.URL+"/")
	})
	req, _ := http.NewRequest("GET", "http://"+addr+"/events/stream", nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Scan() // the first event is here: the stream is in flight
	if err := moat.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("moat still accepts new connections after SIGTERM")
	}
	var got []string
	for lines.Scan() {
		if l := lines.Text(); l != "" {
			got = append(got, l)
		}
	}
	if len(got) != 4 || got[3] != "data: 4" {
		t.Errorf("the stream was cut: after the first event got %q", got)
	}
	done := make(chan error, 1)
	go func() { done <- moat.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("moat exited with %v after SIGTERM, want status 0\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("moat did not exit after the stream ended")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Error("no shutdown log line")
	}
}

func TestSIGHUPReloads(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1/auth/callback")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.URL.Path) }))
	defer api.Close()
	base := func(addr, routes string) string {
		return fmt.Sprintf(`
listen: %q
public_url: "http://%s"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
routes: [%s]
`, addr, addr, op.Issuer, routes)
	}
	var cfgAddr string
	addr, _, _, logs, path := startServe(t, func(addr string) string {
		cfgAddr = addr
		return base(addr, fmt.Sprintf(`{prefix: "/a/", upstream: %q, token: none}`, api.URL+"/a/"))
	})
	get := func(p string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+p, nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	hup := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if get("/b/x") == http.StatusOK {
		t.Fatal("route /b/ exists before the reload")
	}
	hup(base(cfgAddr, fmt.Sprintf(`{prefix: "/a/", upstream: %q, token: none}, {prefix: "/b/", upstream: %q, token: none}`, api.URL+"/a/", api.URL+"/b/")))
	waitFor("the new route", func() bool { return get("/b/x") == http.StatusOK })

	// CORS origins and the log level reload too.
	preflight := func() string {
		req, _ := http.NewRequest(http.MethodOptions, "http://"+addr+"/a/x", nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "x-csrf")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ""
		}
		resp.Body.Close()
		return resp.Header.Get("Access-Control-Allow-Origin")
	}
	if preflight() != "" {
		t.Fatal("a foreign origin passed the preflight before the reload")
	}
	both := fmt.Sprintf(`{prefix: "/a/", upstream: %q, token: none}, {prefix: "/b/", upstream: %q, token: none}`, api.URL+"/a/", api.URL+"/b/")
	hup(base(cfgAddr, both) + "cors: {allowed_origins: [\"https://app.example.com\"]}\nlog: {level: warn}\n")
	waitFor("the new CORS origin", func() bool { return preflight() == "https://app.example.com" })
	time.Sleep(200 * time.Millisecond) // lines from before the reload: past logbuf's flush interval
	before := strings.Count(logs.String(), `"msg":"request"`)
	if before == 0 {
		t.Fatalf("no access line at log.level info before the reload; the check below would prove nothing:\n%s", logs.String())
	}
	get("/a/quiet")
	time.Sleep(200 * time.Millisecond)
	if after := strings.Count(logs.String(), `"msg":"request"`); after != before {
		t.Errorf("log.level: warn after the reload, but an access line (info) was written")
	}

	hup("routes: [{prefix: broken")
	waitFor("the invalid config to be refused", func() bool { return strings.Contains(logs.String(), "configuration reload refused") })
	if get("/a/x") != http.StatusOK || get("/b/x") != http.StatusOK {
		t.Error("an invalid config changed the running one")
	}
}

// moat serve answers forward-auth on forward_auth.listen only.
func TestServeForwardAuthListener(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1/auth/callback")
	fa := freeAddr(t)
	addr, _, _, _, _ := startServe(t, func(addr string) string {
		return fmt.Sprintf(`
listen: %q
public_url: "http://%s"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
routes: [{prefix: "/api/", upstream: "http://127.0.0.1:9/api/"}]
forward_auth: {listen: %q, trusted_proxies: ["127.0.0.1"]}
`, addr, addr, op.Issuer, fa)
	})
	check := func(host string) int {
		req, _ := http.NewRequest("GET", "http://"+host+"/_moat/forward-auth", nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/api/x")
		req.Header.Set("X-CSRF", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := check(fa); got != http.StatusUnauthorized {
		t.Errorf("forward-auth listener without a session: %d, want 401", got)
	}
	if got := check(addr); got != http.StatusNotFound {
		t.Errorf("browser listener at /_moat/forward-auth: %d, want 404", got)
	}
}

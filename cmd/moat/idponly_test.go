package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/demo/idp"
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// moatProcess runs this test binary as the moat command with args.
func moatProcess(t *testing.T, args ...string) (*exec.Cmd, *logtest.Buffer, *logtest.Buffer) {
	t.Helper()
	var stdout, stderr logtest.Buffer
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &stdout, &stderr
}

// TestDemoIdPOnlyWithServe is issue 19.15: `moat demo --idp-only` prints
// the client's credentials and a moat.yaml, and `moat serve` with exactly
// that file logs a user in against it. Both run as processes.
func TestDemoIdPOnlyWithServe(t *testing.T) {
	addr := freeAddr(t)
	_, out, errOut := moatProcess(t, "demo", "--idp-only", "--idp-port", "0", "--redirect-uri", "http://"+addr+"/auth/callback")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	banner := out.String()
	m := regexp.MustCompile(`(?s)A moat.yaml that logs in against it:\n(.*)\nPress Ctrl-C`).FindStringSubmatch(banner)
	if m == nil || !regexp.MustCompile(`client_secret +[A-Z0-9]{26}\n`).MatchString(banner) {
		t.Fatalf("the banner lacks the client secret or a moat.yaml:\n%s", banner)
	}
	path := writeFile(t, m[1])
	_, _, serveLogs := moatProcess(t, "serve", "--config", path)
	waitHealthy(t, addr, serveLogs, 10*time.Second)

	sess := browserLogin(t, "http://"+addr)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/auth/checksession", nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: sess})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"loggedIn":true`) || !strings.Contains(string(body), idp.DemoUser.Email) {
		t.Fatalf("after login, checksession says %s\nmoat logs:\n%s", body, serveLogs.String())
	}
}

// browserLogin logs the demo user in at moat like a browser would, cookie
// by cookie, and returns the session cookie's value.
func browserLogin(t *testing.T, moat string) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base, _ := url.Parse(moat)
	cookies := map[string]string{} // moat's, by name
	next := moat + "/auth/login"
	var form url.Values
	for range 12 {
		method := http.MethodGet
		var body io.Reader
		if form != nil {
			method, body = http.MethodPost, strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, next, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			form = nil
		}
		if req.URL.Host == base.Host {
			for k, v := range cookies {
				req.AddCookie(&http.Cookie{Name: k, Value: v})
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if req.URL.Host == base.Host {
			for _, c := range resp.Cookies() {
				cookies[c.Name] = c.Value
			}
			if v := cookies[session.CookieName]; v != "" {
				return v
			}
		}
		loc, err := resp.Location()
		switch {
		case err == nil && loc.Path == "/login":
			form = url.Values{"authRequestID": {loc.Query().Get("authRequestID")},
				"username": {idp.DemoUser.Username}, "password": {idp.DemoUser.Password}}
			next = loc.String()
		case err == nil:
			next = loc.String()
		default:
			t.Fatalf("%s %s: %d without a redirect", method, req.URL, resp.StatusCode)
		}
	}
	t.Fatal("no session after 12 steps")
	return ""
}

// Busy demo ports are all named in one run, with one "moat:" prefix
// (issue 19.14).
func TestDemoReportsEveryBusyPort(t *testing.T) {
	var args []string
	var ports []string
	for _, flag := range []string{"--bff-port", "--admin-port"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		p := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
		args, ports = append(args, flag, p), append(ports, flag+" "+p)
	}
	cmd, _, stderr := moatProcess(t, append([]string{"demo", "--idp-port", "0", "--api-port", "0"}, args...)...)
	if err := cmd.Wait(); err == nil {
		t.Fatal("moat demo started on busy ports")
	}
	msg := stderr.String()
	for _, want := range ports {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr does not name %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "moat: moat") || strings.Count(msg, "moat:") != 1 {
		t.Errorf("stderr prefixes twice:\n%s", msg)
	}
}

// moat serve opens the admin port before it says "moat listening": a
// clash there is an error, not a start (issue 19.14).
func TestServeAdminPortClash(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1/auth/callback")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := freeAddr(t)
	path := writeFile(t, fmt.Sprintf(`
listen: %q
public_url: "http://%s"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
admin: {listen: %q}
`, addr, addr, op.Issuer, busy.Addr().String()))
	var stderr logtest.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"serve", "--config", path}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "admin listen") {
		t.Fatalf("serve with a busy admin port: %v", err)
	}
	if strings.Contains(stderr.String(), "listening") {
		t.Errorf("serve said it was listening before failing:\n%s", stderr.String())
	}
	// The main port was released.
	if ln, err := net.Listen("tcp", addr); err != nil {
		t.Errorf("the main port stayed open: %v", err)
	} else {
		ln.Close()
	}
}

// The forward-auth port clashes like the admin port: an error before
// "moat listening", every port released.
func TestServeForwardAuthPortClash(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1/auth/callback")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr, admin := freeAddr(t), freeAddr(t)
	path := writeFile(t, fmt.Sprintf(`
listen: %q
public_url: "http://%s"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
admin: {listen: %q}
forward_auth: {listen: %q, trusted_proxies: ["127.0.0.1"]}
`, addr, addr, op.Issuer, admin, busy.Addr().String()))
	var stderr logtest.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"serve", "--config", path}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "forward_auth listen") {
		t.Fatalf("serve with a busy forward-auth port: %v", err)
	}
	if strings.Contains(stderr.String(), "listening") {
		t.Errorf("serve said it was listening before failing:\n%s", stderr.String())
	}
	for _, a := range []string{addr, admin} {
		if ln, err := net.Listen("tcp", a); err != nil {
			t.Errorf("port %s stayed open: %v", a, err)
		} else {
			ln.Close()
		}
	}
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// nginxMain wraps an http {} block into a complete nginx.conf for dir: two
// workers (moat uses both cores too), an access log line per request (as
// moat writes one), everything under dir.
func nginxMain(dir, block string) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers read dir (0700), as the master does
	}
	return fmt.Sprintf(`daemon off;
%[3]s
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, block, user)
}

// startNginx runs nginx with conf and waits until it answers on addr.
func (h *harness) startNginx(ctx context.Context, name, addr, block string) (*exec.Cmd, error) {
	dir := filepath.Join(h.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(nginxMain(dir, block)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(h.o.nginx, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h.procs = append(h.procs, cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/nginx-up")
		if err == nil {
			resp.Body.Close()
			return cmd, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("nginx does not answer on %s (%s)", addr, filepath.Join(dir, "error.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startNginxAlone is nginx proxying to the upstream with a fixed Bearer, as
// it would without moat: the gateway's own cost.
func (h *harness) startNginxAlone(ctx context.Context, upstream string) (*target, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	block := fmt.Sprintf(`upstream api { server %s; keepalive 64; }
server {
    listen %s;
    location /api/ {
        proxy_set_header Authorization "Bearer %s";
        proxy_set_header Cookie "";
        proxy_hide_header Set-Cookie;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://api;
    }
}
`, strings.TrimPrefix(upstream, "http://"), addr, randomHex(16))
	cmd, err := h.startNginx(ctx, "nginx-alone", addr, block)
	if err != nil {
		return nil, err
	}
	logf("nginx alone on %s", addr)
	return &target{name: "nginx alone", url: "http://" + addr + "/api/item", pid: cmd.Process.Pid,
		headers: []string{"X-CSRF: 1"}, tree: true}, nil
}

var gatewaysBlock = regexp.MustCompile("(?s)<!-- gateways_test: nginx -->\\s*```nginx\\n(.*?)```")

// startNginxForwardAuth is nginx with docs/gateways.md's configuration in
// front of a moat (memory store) answering forward-auth: the browser logs
// in through nginx, and each API call is an auth subrequest to moat and
// a proxied request to the upstream.
func (h *harness) startNginxForwardAuth(ctx context.Context, moatBin, upstream string) (*target, error) {
	raw, err := os.ReadFile("docs/gateways.md")
	if err != nil {
		return nil, err
	}
	m := gatewaysBlock.FindSubmatch(raw)
	if m == nil {
		return nil, fmt.Errorf("docs/gateways.md has no nginx block")
	}
	nginxAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	moatAddr, _ := freePort()
	faAddr, _ := freePort()
	block := string(m[1])
	for _, r := range [][2]string{{"listen 80;", "listen " + nginxAddr + ";"}, {"127.0.0.1:4001", moatAddr},
		{"127.0.0.1:4003", faAddr}, {"127.0.0.1:9000", strings.TrimPrefix(upstream, "http://")}} {
		if !strings.Contains(block, r[0]) {
			return nil, fmt.Errorf("docs/gateways.md's nginx block lacks %q", r[0])
		}
		block = strings.ReplaceAll(block, r[0], r[1])
	}
	base := "http://" + nginxAddr
	op := h.startOP(base + "/auth/callback")
	extra := fmt.Sprintf(`server:
  trusted_proxies: ["127.0.0.1"]
forward_auth:
  listen: %q
  trusted_proxies: ["127.0.0.1"]
  identity_headers: {X-Moat-Subject: sub}
`, faAddr)
	moat, logPath, err := h.startMoatProcess(ctx, moatBin, "moat-forward-auth", moatAddr, moatYAML(moatAddr, base, op, "memory", upstream, extra, h.o.logLevel), op, h.o.moatEnv)
	if err != nil {
		return nil, err
	}
	nginx, err := h.startNginx(ctx, "nginx-forward-auth", nginxAddr, block)
	if err != nil {
		return nil, err
	}
	jar, err := login(base + "/auth/login?returnTo=/")
	if err != nil {
		return nil, err
	}
	cookie := jar.header(nginxAddr)
	if !strings.Contains(cookie, session.CookieName+"=") {
		return nil, fmt.Errorf("login through nginx set no session cookie (log: %s)", logPath)
	}
	logf("nginx on %s with moat forward-auth on %s, logged in", nginxAddr, faAddr)
	return &target{name: "nginx + moat forward-auth", url: base + "/api/item", pid: nginx.Process.Pid,
		also: []int{moat.Process.Pid}, tree: true, headers: []string{"Cookie: " + cookie, "X-CSRF: 1"}}, nil
}

// children returns the processes whose parent is pid (nginx's workers).
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// targetCPU is the CPU time of everything serving t: its process, its
// children when t.tree (nginx's workers), and t.also (moat behind nginx).
func targetCPU(t *target) (time.Duration, error) {
	pids := append([]int{t.pid}, t.also...)
	if t.tree {
		pids = append(pids, children(t.pid)...)
	}
	var sum time.Duration
	for _, p := range pids {
		c, err := cpuTime(p)
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestCheckListsEveryProblemWithItsKey(t *testing.T) {
	path := writeFile(t, `
public_url: "http://app.example.com"
oidc: {issuer: "ftp://idp", scopes: [profile]}
session: {keys: ["nope"], store: "cassandra"}
routes: [{prefix: "/api", upstream: "http://api.example.com/"}]
csrf: {mode: "magic"}
`)
	_, stderr, err := runCLI("check", "--config", path)
	if !errors.Is(err, errReported) {
		t.Fatalf("err = %v", err)
	}
	for _, key := range []string{"public_url:", "oidc.issuer:", "oidc.client_id:", "oidc.client_secret:", "oidc.scopes:",
		"session.keys[0]:", "session.store:", "routes[0].prefix:", "routes[0].upstream:", "csrf.mode:"} {
		if !strings.Contains(stderr, "  - "+key) {
			t.Errorf("stderr does not list %s:\n%s", key, stderr)
		}
	}
}

func TestCheckReachesTheIdP(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	good := fmt.Sprintf(`
public_url: "http://127.0.0.1:4001"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
session: {keys: [%q]}
`, op.Issuer, session.NewKey())
	out, stderr, err := runCLI("check", "--config", writeFile(t, good))
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("check: %v\n%s%s", err, out, stderr)
	}
	bad := strings.Replace(good, op.Issuer, "http://127.0.0.1:1", 1)
	_, stderr, err = runCLI("check", "--config", writeFile(t, bad))
	if err == nil || !strings.Contains(stderr, "oidc.issuer: discovery failed") {
		t.Fatalf("unreachable IdP: %v\n%s", err, stderr)
	}
}

func TestKeygenVersionUsage(t *testing.T) {
	out, _, err := runCLI("keygen")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := session.ParseKey(strings.TrimSpace(out)); err != nil {
		t.Errorf("keygen printed %q: %v", out, err)
	}
	if out, _, _ := runCLI("version"); !strings.HasPrefix(out, "moat ") || !strings.Contains(out, "go1.") {
		t.Errorf("version = %q", out)
	}
	if _, stderr, err := runCLI("frobnicate"); err == nil || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: %v %q", err, stderr)
	}
	if _, stderr, err := runCLI("serve"); err == nil || !strings.Contains(stderr, "--config") {
		t.Errorf("serve without config: %v %q", err, stderr)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := writeFile(t, fmt.Sprintf(`
listen: %q
public_url: "http://%s"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
`, addr, addr, op.Issuer))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"serve", "--config", path}, &bytes.Buffer{}, &stderr) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat did not start: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(stderr.String(), "session.keys is empty") {
		t.Errorf("no warning about the generated key:\n%s", stderr.String())
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/moat-bff/moat/internal/clientauth"
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

// An IdP whose certificate no system root signs is reached only through
// oidc.ca_file, and without it discovery fails naming the certificate.
func TestCheckTrustsOIDCCAFile(t *testing.T) {
	op := oidctest.NewTLS(t, "http://127.0.0.1:4001/auth/callback")
	ca := op.CAFile(t)
	config := func(extra string) string {
		return fmt.Sprintf(`
public_url: "http://127.0.0.1:4001"
oidc: {issuer: %q, client_id: "c", client_secret: "s"%s}
session: {keys: [%q]}
`, op.Issuer, extra, session.NewKey())
	}
	if out, stderr, err := runCLI("check", "--config", writeFile(t, config(`, ca_file: "`+ca+`"`))); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("check with oidc.ca_file: %v\n%s%s", err, out, stderr)
	}
	_, stderr, err := runCLI("check", "--config", writeFile(t, config("")))
	if err == nil || !strings.Contains(stderr, "oidc.issuer: discovery failed") || !strings.Contains(stderr, "certificate") {
		t.Fatalf("check without oidc.ca_file: %v\n%s", err, stderr)
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

// Every subcommand answers --help (and -h) with its usage on stdout and
// exit status 0, and does nothing else: keygen prints no key.
func TestEverySubcommandAnswersHelp(t *testing.T) {
	for _, cmd := range []string{"serve", "check", "init", "demo", "keygen", "version"} {
		for _, flag := range []string{"--help", "-h"} {
			out, stderr, err := runCLI(cmd, flag)
			if err != nil || stderr != "" || !strings.HasPrefix(out, "usage: moat "+cmd) {
				t.Errorf("moat %s %s: err=%v\nstdout:\n%s\nstderr:\n%s", cmd, flag, err, out, stderr)
			}
			if cmd == "keygen" && strings.Contains(out, "=\n") {
				t.Errorf("keygen --help printed more than its usage:\n%s", out)
			}
		}
	}
	for _, cmd := range []string{"serve", "check"} {
		out, _, _ := runCLI(cmd, "--help")
		if !strings.Contains(out, "-config") {
			t.Errorf("moat %s --help does not list --config:\n%s", cmd, out)
		}
	}
	// A wrong flag is still an error, reported on stderr.
	if _, stderr, err := runCLI("keygen", "--bits", "128"); !errors.Is(err, errReported) || !strings.Contains(stderr, "bits") {
		t.Errorf("keygen --bits: err=%v stderr=%s", err, stderr)
	}
}

// moat check lists decoding problems (unknown keys, wrong types) together
// with validation problems, each by key path, in one run.
func TestCheckListsDecodeAndValidationProblemsInOneRun(t *testing.T) {
	path := writeFile(t, `
public_url: "https://app.example.com"
oidc: {issuer: "https://idp.example.com", client_id: c, client_secret: s, timeout: 10}
routes:
  - prefix: /api/
    upstream: "https://api.internal/"
    tokn: user
csrf: {mode: magic}
server: {max_body_bytes: 2MiB}
`)
	_, stderr, err := runCLI("check", "--config", path)
	if !errors.Is(err, errReported) {
		t.Fatalf("err = %v", err)
	}
	for _, line := range []string{
		"moat: " + path + " is not valid:",
		`  - oidc.timeout: "10" is not a duration like 90s, 15m or 12h (line 3)`,
		"  - routes[0].tokn: unknown key (did you mean token?) (line 7)",
		`  - csrf.mode: "magic" is not a mode; use header or fetch-metadata`,
		"  - session.keys: is required off loopback",
	} {
		if !strings.Contains(stderr, line) {
			t.Errorf("stderr lacks %q:\n%s", line, stderr)
		}
	}
	if strings.Contains(stderr, "max_body_bytes") || strings.Contains(stderr, "config.Route") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestKeygenJWK: keygen --jwk writes a private key (0600, never
// overwritten) that private_key_jwt accepts and prints only the public
// JWK set.
func TestKeygenJWK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-key.pem")
	out, stderr, err := runCLI("keygen", "--jwk", "--out", path)
	if err != nil {
		t.Fatalf("keygen --jwk: %v %s", err, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	ks, err := clientauth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() {
		t.Fatalf("stdout is not one public JWK: %v\n%s", err, out)
	}
	if kid, _ := ks.Signing(); set.Keys[0].KeyID != kid || strings.Contains(out, `"d"`) {
		t.Fatalf("printed kid %q, key file kid %q; or a private part was printed", set.Keys[0].KeyID, kid)
	}
	if !strings.Contains(stderr, "client_key_file: "+path) {
		t.Errorf("keygen --jwk does not say what to configure:\n%s", stderr)
	}
	before, _ := os.ReadFile(path)
	if _, _, err := runCLI("keygen", "--jwk", "--out", path); err == nil {
		t.Fatal("keygen --jwk overwrote an existing key")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the existing key changed")
	}
	if _, _, err := runCLI("keygen", "--jwk"); err == nil {
		t.Fatal("keygen --jwk without --out printed or wrote a key somewhere")
	}
	for _, args := range [][]string{{"--out", path + ".2"}, {"--alg", "PS256"}} {
		out, _, err := runCLI(append([]string{"keygen"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "goes with --jwk") || out != "" {
			t.Errorf("keygen %v without --jwk: %v, stdout %q; want an error naming --jwk and no key", args, err, out)
		}
	}
}

// TestKeygenJWKNeverLeavesAPartialKey: a write that fails half-way (here
// the file size limit, as a full disk would) leaves no key file, partial
// or whole, and no temporary file; keygen fails.
func TestKeygenJWKNeverLeavesAPartialKey(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to set the file size limit")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "client-key.pem")
	// A PS256 (RSA) key's PEM is over 1 KB; the limit is 512 or 1024 bytes.
	cmd := exec.Command(sh, "-c", `trap "" XFSZ; ulimit -f 1 && exec "$@"`, "sh", os.Args[0], "keygen", "--jwk", "--alg", "PS256", "--out", path)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("keygen --jwk succeeded past the file size limit:\n%s", out)
	}
	if !strings.Contains(string(out), "file too large") {
		t.Fatalf("keygen --jwk did not fail on the write: %v\n%s", err, out)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a failed keygen --jwk left %v", left)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/realop"
	"github.com/moat-bff/moat/internal/session"
)

func runInit(t *testing.T, stdin string, interactive bool, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := initCmd(context.Background(), args, strings.NewReader(stdin), interactive, &out, &errb)
	return out.String(), errb.String(), err
}

func secretFile(t *testing.T, dir, secret string) string {
	t.Helper()
	p := filepath.Join(dir, "client_secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInitAgainstInProcessOP: init reads discovery, reports each feature,
// writes a configuration `moat check` accepts and a 0600 key file, and
// prints the URIs to register.
func TestInitAgainstInProcessOP(t *testing.T) {
	t.Setenv("MOAT_OIDC_CLIENT_SECRET", "")
	os.Unsetenv("MOAT_OIDC_CLIENT_SECRET")
	for _, tc := range []struct {
		name     string
		behavior func(*oidctest.Behavior)
		want     []string
		absent   []string
	}{
		{"full", func(b *oidctest.Behavior) { b.PAR = true },
			[]string{"yes  pushed authorization requests (RFC 9126)", "yes  token revocation (RFC 7009)",
				"yes  RP-initiated logout", "yes  back-channel logout", "yes  authorization response iss (RFC 9207)",
				"redirect URI (exact): http://127.0.0.1:4011/auth/callback",
				"post-logout redirect URI: http://localhost:5173/",
				"back-channel logout URI: http://127.0.0.1:4011/auth/backchannel-logout"},
			nil},
		{"bare", func(b *oidctest.Behavior) { b.NoRevocation, b.NoEndSession, b.AdvertiseIss = true, true, false },
			[]string{"no   pushed authorization requests", "no   token revocation", "no   RP-initiated logout",
				"no   authorization response iss", "warning: logout: the provider has no revocation_endpoint"},
			[]string{"post-logout redirect URI"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := oidctest.New(t, "http://127.0.0.1:4011/auth/callback")
			op.Set(tc.behavior)
			dir := t.TempDir()
			out := filepath.Join(dir, "moat.yaml")
			stdout, stderr, err := runInit(t, "", false, "--issuer", op.Issuer, "--client-id", op.ClientID,
				"--client-secret-file", secretFile(t, dir, op.ClientSecret), "--public-url", "http://127.0.0.1:4011",
				"--frontend-url", "http://localhost:5173", "--upstream", "http://127.0.0.1:9/api/", "--out", out)
			if err != nil {
				t.Fatalf("init: %v\n%s%s", err, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(stdout, w) {
					t.Errorf("output has %q:\n%s", w, stdout)
				}
			}
			if strings.Contains(stdout+readFile(t, out), op.ClientSecret) {
				t.Error("the client secret was printed or written into the configuration")
			}
			fi, err := os.Stat(filepath.Join(dir, "moat.keys"))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v %v", fi, err)
			}
			cfg, err := config.Load(out, func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != "127.0.0.1:4011" || cfg.FrontendURL != "http://localhost:5173" || len(cfg.Routes) != 1 ||
				cfg.CORS.AllowedOrigins[0] != "http://localhost:5173" || !strings.Contains(strings.Join(cfg.OIDC.Scopes, " "), "openid") {
				t.Errorf("configuration: %+v", cfg)
			}
			cout, cerr, err := runCLI("check", "--config", out)
			if err != nil || !strings.Contains(cout, ": OK") {
				t.Fatalf("moat check refused what init wrote: %v\n%s%s", err, cout, cerr)
			}
			// A second run must not overwrite the files.
			_, stderr, err = runInit(t, "", false, "--issuer", op.Issuer, "--client-id", "x",
				"--client-secret-file", filepath.Join(dir, "client_secret"), "--out", out)
			if !errors.Is(err, errReported) || !strings.Contains(stderr, "exists") {
				t.Fatalf("second init: %v %s", err, stderr)
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInitPromptsOnATerminal(t *testing.T) {
	os.Unsetenv("MOAT_OIDC_CLIENT_SECRET")
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	dir := t.TempDir()
	out := filepath.Join(dir, "moat.yaml")
	// issuer, client ID, public URL (default), frontend (none), upstream (none), secret file
	answers := strings.Join([]string{op.Issuer, op.ClientID, "", "", "", secretFile(t, dir, op.ClientSecret)}, "\n") + "\n"
	stdout, stderr, err := runInit(t, answers, true, "--out", out)
	if err != nil {
		t.Fatalf("init: %v\n%s%s", err, stdout, stderr)
	}
	for _, q := range []string{"Issuer URL of your OpenID Provider: ", "Client ID: ", "[http://127.0.0.1:4001]: ", "File holding the client secret: "} {
		if !strings.Contains(stdout, q) {
			t.Errorf("no prompt %q:\n%s", q, stdout)
		}
	}
	if !strings.Contains(stdout, "redirect URI (exact): http://127.0.0.1:4001/auth/callback") {
		t.Errorf("registration:\n%s", stdout)
	}
	if cout, cerr, err := runCLI("check", "--config", out); err != nil {
		t.Fatalf("check: %v %s %s", err, cout, cerr)
	}
}

func TestInitNamesWhatIsMissing(t *testing.T) {
	os.Unsetenv("MOAT_OIDC_CLIENT_SECRET")
	_, stderr, err := runInit(t, "", false, "--out", filepath.Join(t.TempDir(), "moat.yaml"))
	if !errors.Is(err, errReported) {
		t.Fatal(err)
	}
	for _, f := range []string{"--issuer", "--client-id", "--client-secret-file (or MOAT_OIDC_CLIENT_SECRET)"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("stderr does not name %s: %s", f, stderr)
		}
	}
	_, stderr, err = runInit(t, "", false, "--issuer", "http://127.0.0.1:1", "--client-id", "c",
		"--client-secret-file", secretFile(t, t.TempDir(), "s"), "--out", filepath.Join(t.TempDir(), "moat.yaml"))
	if !errors.Is(err, errReported) || !strings.Contains(stderr, "discovery document of http://127.0.0.1:1 failed") {
		t.Fatalf("unreachable issuer: %v %s", err, stderr)
	}
}

// TestInitAgainstRealOP: init against the real oidc-provider; the client is
// registered with exactly the URIs init prints, and moat, started from the
// written file, logs a user in, proxies an API call and logs out to the
// post-logout URI.
func TestInitAgainstRealOP(t *testing.T) {
	realop.Require(t)
	t.Setenv("MOAT_OIDC_CLIENT_SECRET", "")
	os.Unsetenv("MOAT_OIDC_CLIENT_SECRET")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + ln.Addr().String()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"auth":`+jsonString(r.Header.Get("Authorization") != "")+`}`)
	}))
	defer api.Close()
	registered := []string{
		"redirect URI (exact): " + public + "/auth/callback",
		"post-logout redirect URI: " + public + "/",
		"back-channel logout URI: " + public + "/auth/backchannel-logout (session required: yes)",
	}
	op := realop.Start(t, realop.Options{
		RedirectURIs: []string{public + "/auth/callback"}, PostLogoutRedirectURIs: []string{public + "/"},
		BackchannelLogoutURI: public + "/auth/backchannel-logout",
	})
	dir := t.TempDir()
	out := filepath.Join(dir, "moat.yaml")
	stdout, stderr, err := runInit(t, "", false, "--issuer", op.Issuer, "--client-id", op.ClientID,
		"--client-secret-file", secretFile(t, dir, op.ClientSecret), "--public-url", public,
		"--upstream", api.URL+"/", "--out", out)
	if err != nil {
		t.Fatalf("init: %v\n%s%s", err, stdout, stderr)
	}
	for _, r := range registered {
		if !strings.Contains(stdout, "  "+r+"\n") {
			t.Errorf("init does not print %q:\n%s", r, stdout)
		}
	}
	for _, f := range []string{"yes  pushed authorization requests", "yes  token revocation", "yes  RP-initiated logout",
		"yes  back-channel logout", "yes  refresh tokens", "yes  authorization response iss"} {
		if !strings.Contains(stdout, f) {
			t.Errorf("init does not report %q:\n%s", f, stdout)
		}
	}
	if cout, cerr, err := runCLI("check", "--config", out); err != nil {
		t.Fatalf("check: %v\n%s%s", err, cout, cerr)
	}

	cfg, err := config.Load(out, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := gateway.New(context.Background(), cfg, log, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv, err := gateway.NewHTTPServer(cfg, gw, log)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	ua := op.UserAgent("frank")
	page, err := ua.Browse(context.Background(), public+"/auth/login?returnTo=/home")
	if err != nil || page.URL.Path != "/home" {
		t.Fatalf("login: %v %v %s", err, page.URL, page.Body)
	}
	req, _ := http.NewRequest(http.MethodGet, public+"/api/orders", nil)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	r, err := ua.Do(req)
	if err != nil || r.Status != http.StatusOK || string(r.Body) != `{"auth":true}` {
		t.Fatalf("API through moat: %v %d %s", err, r.Status, r.Body)
	}
	req, _ = http.NewRequest(http.MethodPost, public+"/auth/logout", nil)
	req.Header.Set(csrf.HeaderName, csrf.HeaderValue)
	r, err = ua.Do(req)
	var body struct{ LogoutURL string }
	if err != nil || json.Unmarshal(r.Body, &body) != nil {
		t.Fatalf("logout: %v %s", err, r.Body)
	}
	page, err = ua.Browse(context.Background(), body.LogoutURL)
	if err != nil || page.URL.String() != public+"/" {
		t.Fatalf("logout ended at %v (%v)", page.URL, err)
	}
}

func jsonString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestCheckWarnsAboutProviderQuirks(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	op.Set(func(b *oidctest.Behavior) { b.NoRevocation, b.NoEndSession = true, true })
	path := writeFile(t, `
public_url: "http://127.0.0.1:4001"
oidc: {issuer: "`+op.Issuer+`", client_id: "c", client_secret: "s", post_logout_redirect_url: "http://127.0.0.1:4001/"}
session: {keys: ["`+session.NewKey()+`"]}
`)
	out, stderr, err := runCLI("check", "--config", path)
	if err != nil {
		t.Fatalf("check: %v %s", err, stderr)
	}
	for _, w := range []string{"warning: idp: logout: the provider has no revocation_endpoint",
		"warning: idp: oidc.post_logout_redirect_url: the provider has no end_session_endpoint"} {
		if !strings.Contains(out, w) {
			t.Errorf("check does not warn %q:\n%s", w, out)
		}
	}
}

// TestInitTrustsCAFile: a provider whose certificate no system root signs
// is read with --ca-file, which lands in oidc.ca_file so check and serve
// trust it too; without it init names the certificate problem.
func TestInitTrustsCAFile(t *testing.T) {
	os.Unsetenv("MOAT_OIDC_CLIENT_SECRET")
	op := oidctest.NewTLS(t, "http://127.0.0.1:4001/auth/callback")
	ca := op.CAFile(t)
	dir := t.TempDir()
	args := []string{"--issuer", op.Issuer, "--client-id", "c", "--client-secret-file", secretFile(t, dir, "s")}
	_, stderr, err := runInit(t, "", false, append(args, "--out", filepath.Join(dir, "a.yaml"))...)
	if !errors.Is(err, errReported) || !strings.Contains(stderr, "certificate") {
		t.Fatalf("init without --ca-file: %v %s", err, stderr)
	}
	out := filepath.Join(dir, "moat.yaml")
	stdout, stderr, err := runInit(t, "", false, append(args, "--ca-file", ca, "--out", out)...)
	if err != nil {
		t.Fatalf("init --ca-file: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(readFile(t, out), `ca_file: "`+ca+`"`) {
		t.Fatalf("oidc.ca_file not written:\n%s", readFile(t, out))
	}
	if cout, cerr, err := runCLI("check", "--config", out); err != nil || !strings.Contains(cout, ": OK") {
		t.Fatalf("check: %v\n%s%s", err, cout, cerr)
	}
}

// A pipe or /dev/null on stdin is not someone to ask: init must not wait
// for answers there (CI, scripts).
func TestIsInteractive(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, f := range map[string]*os.File{"/dev/null": null, "pipe": r} {
		if isInteractive(f) {
			t.Errorf("%s counted as a terminal", name)
		}
	}
}

// init --force replaces a key file that others could read with one only
// its owner can: rewriting it in place would keep the old mode.
func TestInitForceWritesPrivateFiles(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4011/auth/callback")
	dir := t.TempDir()
	out, keys := filepath.Join(dir, "moat.yaml"), filepath.Join(dir, "moat.keys")
	for _, f := range []string{out, keys} {
		if err := os.WriteFile(f, []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	stdout, stderr, err := runInit(t, "", false, "--issuer", op.Issuer, "--client-id", op.ClientID,
		"--client-secret-file", secretFile(t, dir, op.ClientSecret), "--public-url", "http://127.0.0.1:4011",
		"--frontend-url", "http://localhost:5173", "--upstream", "http://127.0.0.1:9/api/", "--out", out, "--force")
	if err != nil {
		t.Fatalf("init --force: %v\n%s%s", err, stdout, stderr)
	}
	for _, f := range []string{out, keys} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
		if readFile(t, f) == "old\n" {
			t.Errorf("%s was not replaced", f)
		}
	}
}

func TestWritePrivateRefusesAnExistingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := writePrivate(p, []byte("a"), false); err != nil {
		t.Fatal(err)
	}
	if err := writePrivate(p, []byte("b"), false); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second write without replace: %v", err)
	}
	if got := readFile(t, p); got != "a" {
		t.Fatalf("content %q", got)
	}
}

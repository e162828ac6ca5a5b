// Package hydraop starts Ory Hydra (an OpenID Certified provider, pinned in
// tool/go.mod and built by scripts/hydra) for integration tests: a second,
// independent real provider beside internal/realop's node oidc-provider.
//
// Hydra has no sign-in pages of its own: it redirects the browser to a
// login, consent and logout app, which accepts or rejects each challenge
// through Hydra's admin API. The package serves that app (HTML forms that
// realop.UserAgent fills in as a person would), registers a client through
// the admin API, and introspects tokens there as a resource server would.
//
// Without the hydra binary tests skip, unless MOAT_TEST_REQUIRE_HYDRA=1
// (as .ci/run sets), which makes them fail.
package hydraop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/realop"
)

// RequireEnv names the variable that turns a missing hydra from a skip into
// a failure.
const RequireEnv = "MOAT_TEST_REQUIRE_HYDRA"

// Version is the Hydra release the tests expect: the one tool/go.mod pins
// and scripts/hydra stamps into the binary.
const Version = "v2.3.0"

// Options configure the provider and its client.
type Options struct {
	// RedirectURIs, PostLogoutRedirectURIs and BackchannelLogoutURI are
	// the client's registered URIs.
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	BackchannelLogoutURI   string
	// AccessTokenTTL is ttl.access_token; Hydra's default (1h) when zero.
	AccessTokenTTL time.Duration
	// JWTAccessTokens sets strategies.access_token: jwt, so access tokens
	// are JWTs signed with Hydra's keys instead of opaque strings.
	JWTAccessTokens bool
}

// Scope is the client's registered scope: the scopes it may ask for.
const Scope = "openid offline_access profile email"

// OP is a running Hydra with one registered client.
type OP struct {
	// Issuer is the public URL (http://127.0.0.1:port), as discovery says.
	Issuer string
	// Admin is the admin API's base URL.
	Admin string
	// ClientID and ClientSecret are the registered client's.
	ClientID     string
	ClientSecret string
	// App is the login, consent and logout app's base URL.
	App string

	mu      sync.Mutex
	stderr  bytes.Buffer
	signIns []string // subjects that submitted the sign-in form
}

// Binary returns the hydra binary's path: hydra on PATH, else
// $HOME/go/bin/hydra, where scripts/hydra puts it.
func Binary() (string, error) {
	if p, err := exec.LookPath("hydra"); err == nil {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(home, "go", "bin", "hydra")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("hydra is not installed (run scripts/hydra): %w", err)
	}
	return p, nil
}

// Available reports why Hydra cannot run here, or nil. A binary of another
// version is refused, so that the quirks the tests show are the pinned
// release's.
func Available() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s version: %w: %s", bin, err, out)
	}
	if !strings.Contains(string(out), Version) {
		return fmt.Errorf("%s is not Hydra %s (rebuild it with scripts/hydra): %s", bin, Version, out)
	}
	return nil
}

// Require skips t when Hydra cannot run, or fails it when
// MOAT_TEST_REQUIRE_HYDRA=1.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("Hydra required (%s=1): %v", RequireEnv, err)
			return
		}
		t.Skipf("Hydra unavailable: %v", err)
	}
}

// Start runs Hydra (in-memory database) and its login app for the duration
// of t, and registers the client.
func Start(t testing.TB, opts Options) *OP {
	t.Helper()
	Require(t)
	bin, _ := Binary()
	op := &OP{}
	app := httptest.NewServer(op.appHandler())
	t.Cleanup(app.Close)
	op.App = app.URL

	public, admin := freePort(t), freePort(t)
	op.Issuer = "http://127.0.0.1:" + public
	op.Admin = "http://127.0.0.1:" + admin
	env := map[string]string{
		"DSN":                           "memory",
		"URLS_SELF_ISSUER":              op.Issuer,
		"URLS_LOGIN":                    op.App + "/login",
		"URLS_CONSENT":                  op.App + "/consent",
		"URLS_LOGOUT":                   op.App + "/logout",
		"URLS_POST_LOGOUT_REDIRECT":     op.App + "/logged-out",
		"SERVE_PUBLIC_HOST":             "127.0.0.1",
		"SERVE_PUBLIC_PORT":             public,
		"SERVE_ADMIN_HOST":              "127.0.0.1",
		"SERVE_ADMIN_PORT":              admin,
		"SECRETS_SYSTEM":                randHex(16),
		"SQA_OPT_OUT":                   "true",
		"LOG_LEVEL":                     "warn", // errors, e.g. of back-channel logout deliveries
		"LOG_LEAK_SENSITIVE_VALUES":     "false",
		"OAUTH2_EXPOSE_INTERNAL_ERRORS": "true",
		// Hydra requires PKCE only of public clients by default; requiring
		// it of every client makes each login prove moat sends it.
		"OAUTH2_PKCE_ENFORCED": "true",
	}
	if opts.AccessTokenTTL > 0 {
		env["TTL_ACCESS_TOKEN"] = opts.AccessTokenTTL.String()
	}
	if opts.JWTAccessTokens {
		env["STRATEGIES_ACCESS_TOKEN"] = "jwt"
	}
	// --dev allows the http issuer on 127.0.0.1.
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := writerFunc(func(p []byte) (int, error) {
		op.mu.Lock()
		defer op.mu.Unlock()
		return op.stderr.Write(p)
	})
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("hydra log:\n%s", op.Log())
		}
	})

	// Ready once the admin API answers and the signing keys exist: Hydra
	// makes them on first use, which takes seconds (RSA 4096).
	deadline := time.Now().Add(60 * time.Second)
	for _, u := range []string{op.Admin + "/health/ready", op.Issuer + "/.well-known/jwks.json"} {
		for {
			resp, err := http.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-exited:
				t.Fatal("hydra exited before it was ready")
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("hydra not ready within 60s (%s: %v)", u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	op.register(t, opts)
	return op
}

// register creates the client through the admin API (POST /admin/clients).
func (op *OP) register(t testing.TB, opts Options) {
	t.Helper()
	secret := randHex(24)
	client := map[string]any{
		"client_secret":              secret,
		"redirect_uris":              opts.RedirectURIs,
		"post_logout_redirect_uris":  opts.PostLogoutRedirectURIs,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      Scope,
		"token_endpoint_auth_method": "client_secret_basic",
	}
	if opts.BackchannelLogoutURI != "" {
		client["backchannel_logout_uri"] = opts.BackchannelLogoutURI
		client["backchannel_logout_session_required"] = true
	}
	var got struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := op.adminJSON(context.Background(), http.MethodPost, "/admin/clients", client, &got); err != nil {
		t.Fatalf("registering the client: %v", err)
	}
	if got.ID == "" || got.Secret != secret {
		t.Fatalf("hydra registered client %q with another secret than asked", got.ID)
	}
	op.ClientID, op.ClientSecret = got.ID, secret
}

// UserAgent returns a fresh user agent (empty jar) that signs in as login
// on the login app's form and consents and confirms logout there.
func (op *OP) UserAgent(login string) *realop.UserAgent {
	return realop.NewUserAgent(login, http.DefaultTransport, op.Issuer, op.App)
}

// Log is what Hydra has logged so far.
func (op *OP) Log() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.stderr.String()
}

// SignIns are the subjects that signed in on the login form, in order; a
// login Hydra let through on its own session (skip) is not one.
func (op *OP) SignIns() []string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]string(nil), op.signIns...)
}

// Introspect asks Hydra's admin API whether token is active (RFC 7662), as
// a resource server would, and returns the whole answer.
func (op *OP) Introspect(ctx context.Context, token string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, op.Admin+"/admin/oauth2/introspect",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("introspection: %s %s", resp.Status, b)
	}
	out := map[string]any{}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// EndSession ends the login session sid at Hydra through the admin API
// (DELETE /admin/oauth2/auth/sessions/login?sid=), as an administrator
// would; Hydra then sends back-channel logout tokens to its clients.
func (op *OP) EndSession(ctx context.Context, sid string) error {
	return op.adminJSON(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/login?sid="+url.QueryEscape(sid), nil, nil)
}

// RotateSigningKey adds a new key to the set Hydra signs ID tokens and
// logout tokens with (POST /admin/keys/hydra.openid.id-token), as an
// operator rotating keys would, and returns its kid. Hydra signs with it at
// once: it publishes no key ahead of its use.
func (op *OP) RotateSigningKey(ctx context.Context) (string, error) {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	kid := "rotated-" + randHex(4)
	err := op.adminJSON(ctx, http.MethodPost, "/admin/keys/hydra.openid.id-token", map[string]string{"alg": "RS256", "use": "sig", "kid": kid}, &set)
	if err == nil && (len(set.Keys) != 1 || set.Keys[0].KID != kid) {
		err = fmt.Errorf("hydra created %+v, not the key %s", set.Keys, kid)
	}
	return kid, err
}

// adminJSON calls the admin API with an optional JSON body and decodes a
// JSON answer into out, when given.
func (op *OP) adminJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, op.Admin+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<title>{{.Title}}</title>
<form method="post" action="{{.Action}}">
<input type="hidden" name="challenge" value="{{.Challenge}}">
{{if .SignIn}}<input name="login" autocomplete="username">
<input type="password" name="password">{{end}}
<button type="submit" name="accept" value="yes" autofocus>{{.Title}}</button>
</form>`))

// appHandler is the login, consent and logout app Hydra redirects to. Each
// GET shows a form (or, for a login Hydra already knows, accepts at once,
// as Hydra requires); each POST accepts the challenge through the admin
// API and redirects the browser where Hydra says.
func (op *OP) appHandler() http.Handler {
	mux := http.NewServeMux()
	show := func(w http.ResponseWriter, title, action, challenge string, signIn bool) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, map[string]any{"Title": title, "Action": action, "Challenge": challenge, "SignIn": signIn})
	}
	accept := func(w http.ResponseWriter, r *http.Request, kind, challenge string, body any) {
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		path := "/admin/oauth2/auth/requests/" + kind + "/accept?" + kind + "_challenge=" + url.QueryEscape(challenge)
		if err := op.adminJSON(r.Context(), http.MethodPut, path, body, &out); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	}
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("login_challenge")
		var req struct {
			Skip    bool   `json:"skip"`
			Subject string `json:"subject"`
		}
		if err := op.adminJSON(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(ch), nil, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if req.Skip {
			accept(w, r, "login", ch, map[string]any{"subject": req.Subject})
			return
		}
		show(w, "Sign in", "/login", ch, true)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		login := r.PostFormValue("login")
		if login == "" || r.PostFormValue("password") == "" {
			http.Error(w, "login and password are required", http.StatusBadRequest)
			return
		}
		op.mu.Lock()
		op.signIns = append(op.signIns, login)
		op.mu.Unlock()
		accept(w, r, "login", r.PostFormValue("challenge"), map[string]any{"subject": login, "remember": true})
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		show(w, "Allow", "/consent", r.URL.Query().Get("consent_challenge"), false)
	})
	mux.HandleFunc("POST /consent", func(w http.ResponseWriter, r *http.Request) {
		ch := r.PostFormValue("challenge")
		var req struct {
			Subject        string   `json:"subject"`
			RequestedScope []string `json:"requested_scope"`
			Audience       []string `json:"requested_access_token_audience"`
		}
		if err := op.adminJSON(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(ch), nil, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		// The claims of the ID token and of /userinfo come from the
		// consent app: Hydra keeps no user profile.
		accept(w, r, "consent", ch, map[string]any{
			"grant_scope":                 req.RequestedScope,
			"grant_access_token_audience": req.Audience,
			"session": map[string]any{"id_token": map[string]any{
				"email": req.Subject + "@example.test", "email_verified": true, "name": req.Subject,
			}},
		})
	})
	mux.HandleFunc("GET /logout", func(w http.ResponseWriter, r *http.Request) {
		show(w, "Sign out", "/logout", r.URL.Query().Get("logout_challenge"), false)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		accept(w, r, "logout", r.PostFormValue("challenge"), nil)
	})
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "Signed out.") // where Hydra ends a logout no client asked for
	})
	return mux
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

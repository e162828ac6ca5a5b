// Package realop starts the real, OpenID Certified node oidc-provider
// (pinned in provider/package-lock.json) for integration tests, registers
// clients from Go, and logs a user in through its interaction pages over
// HTTP. Our in-process fake OP (internal/oidc/oidctest) is for misbehaviour;
// this is the counterpart that shows moat works with a real provider.
//
// The provider needs node and `npm ci --prefix internal/realop/provider`.
// Without them tests skip, unless MOAT_TEST_REQUIRE_REAL_OP=1 (as .ci/run
// sets), which makes them fail.
package realop

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// RequireEnv names the variable that turns a missing provider from a skip
// into a failure.
const RequireEnv = "MOAT_TEST_REQUIRE_REAL_OP"

// Client is an OAuth client registered at the provider at start.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs are the registered redirect_uri values (exact match).
	RedirectURIs []string
	// PostLogoutRedirectURIs are the registered post_logout_redirect_uri
	// values (RP-Initiated Logout §3.1).
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives logout tokens (Back-Channel Logout §2.2).
	BackchannelLogoutURI string
	// AuthMethod is the token_endpoint_auth_method; client_secret_basic
	// when empty.
	AuthMethod string
	// JWKS is the client's public JWK set, for private_key_jwt and
	// request objects.
	JWKS json.RawMessage
	// RequestObjectSigningAlg, if set, is the client's
	// request_object_signing_alg, and the client must send every
	// authorization request as a request object signed with it (RFC 9101).
	RequestObjectSigningAlg string
}

// Options configure the provider.
type Options struct {
	// Clients are registered at start. When empty, one client is
	// registered with the URIs below and a generated ID and secret.
	Clients []Client
	// RedirectURIs, PostLogoutRedirectURIs and BackchannelLogoutURI
	// describe the default client.
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	BackchannelLogoutURI   string
	// ClientAuthMethod and ClientJWKS set the default client's
	// token_endpoint_auth_method and public keys (private_key_jwt).
	ClientAuthMethod string
	ClientJWKS       json.RawMessage
	// RequestObjectSigningAlg, if set, turns on request objects (JAR,
	// RFC 9101) and makes the default client require them, signed with it.
	RequestObjectSigningAlg string
	// AccessTokenTTL is the access token lifetime; one hour when zero.
	AccessTokenTTL time.Duration
	// Resources maps resource indicators (RFC 8707) to the scope granted
	// for them; access tokens for a resource are JWTs with it as audience.
	Resources map[string]string
	// DefaultResource is used when a request names no resource.
	DefaultResource string
	// RequirePAR makes the provider refuse authorization requests that
	// were not pushed (RFC 9126 §5).
	RequirePAR bool
	// StrictOfflineAccess keeps oidc-provider's default: refresh tokens
	// only for the offline_access scope, which it grants only with
	// prompt=consent. Otherwise every client allowed the refresh_token
	// grant gets one.
	StrictOfflineAccess bool
	// TLS serves the provider on https with a certificate of its own
	// (OP.CAFile, OP.HTTPClient), asks clients for certificates and turns
	// on RFC 8705: tls_client_auth, self_signed_tls_client_auth (the
	// client's certificate registered as x5c in ClientJWKS) and
	// certificate-bound access tokens for the default client.
	TLS bool
	// IDTokenSigningAlg, if ES256, gives the provider an ECDSA P-256
	// signing key instead of its RS256 development key, and makes the
	// default client's ID tokens ES256 (FAPI 2.0 §5.4.1 allows no RS256).
	IDTokenSigningAlg string
	// DPoP registers the default client with dpop_bound_access_tokens
	// (RFC 9449 §5.2): its token requests without a proof are refused.
	// oidc-provider accepts proofs from every client either way.
	DPoP bool
	// DPoPRequireNonce makes the provider refuse proofs without its
	// nonce (use_dpop_nonce with DPoP-Nonce, RFC 9449 §8).
	DPoPRequireNonce bool
	// FAPI2 turns on oidc-provider's FAPI 2.0 Security Profile checks
	// (features.fapi profile '2.0': PKCE, client assertions audienced to
	// the issuer alone, a registered redirect_uri always sent).
	FAPI2 bool
}

// OP is a running provider.
type OP struct {
	// Issuer is the provider's issuer URL (http://127.0.0.1:port).
	Issuer string
	// ClientID and ClientSecret are the first registered client's.
	ClientID     string
	ClientSecret string
	// Clients are all registered clients, with IDs and secrets filled in.
	Clients []Client

	rsID, rsSecret string // the introspecting resource server

	// CAFile is the PEM certificate of the provider's https listener
	// (Options.TLS), for oidc.ca_file; "" on http.
	CAFile     string
	httpClient *http.Client

	mu     sync.Mutex
	stderr strings.Builder
}

// Dir is the directory holding provider.mjs and its node_modules.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "provider")
}

// Available reports why the provider cannot run here, or nil.
func Available() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node is not installed: %w", err)
	}
	if _, err := os.Stat(filepath.Join(Dir(), "node_modules", "oidc-provider", "package.json")); err != nil {
		return fmt.Errorf("oidc-provider is not installed (run: npm ci --prefix internal/realop/provider): %w", err)
	}
	return nil
}

// Require skips t when the provider cannot run, or fails it when
// MOAT_TEST_REQUIRE_REAL_OP=1.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("real OP required (%s=1): %v", RequireEnv, err)
			return
		}
		t.Skipf("real OP unavailable: %v", err)
	}
}

// Start runs a provider for the duration of t.
func Start(t testing.TB, opts Options) *OP {
	t.Helper()
	Require(t)
	clients := opts.Clients
	if len(clients) == 0 {
		clients = []Client{{
			RedirectURIs: opts.RedirectURIs, PostLogoutRedirectURIs: opts.PostLogoutRedirectURIs,
			BackchannelLogoutURI: opts.BackchannelLogoutURI,
			AuthMethod:           opts.ClientAuthMethod, JWKS: opts.ClientJWKS,
			RequestObjectSigningAlg: opts.RequestObjectSigningAlg,
		}}
	}
	type clientJSON struct {
		ID                     string          `json:"client_id"`
		Secret                 string          `json:"client_secret"`
		RedirectURIs           []string        `json:"redirect_uris"`
		PostLogoutRedirectURIs []string        `json:"post_logout_redirect_uris,omitempty"`
		BackchannelLogoutURI   string          `json:"backchannel_logout_uri,omitempty"`
		BackchannelSession     bool            `json:"backchannel_logout_session_required,omitempty"`
		GrantTypes             []string        `json:"grant_types"`
		ResponseTypes          []string        `json:"response_types"`
		AuthMethod             string          `json:"token_endpoint_auth_method"`
		JWKS                   json.RawMessage `json:"jwks,omitempty"`
		CertBound              bool            `json:"tls_client_certificate_bound_access_tokens,omitempty"`
		DPoPBound              bool            `json:"dpop_bound_access_tokens,omitempty"`
		RequestObjectAlg       string          `json:"request_object_signing_alg,omitempty"`
		RequireRequestObject   bool            `json:"require_signed_request_object,omitempty"`
		IDTokenAlg             string          `json:"id_token_signed_response_alg,omitempty"`
	}
	var cj []clientJSON
	requestObjects := false
	for i := range clients {
		c := &clients[i]
		if c.ID == "" {
			c.ID = "moat-" + randHex(6)
		}
		if c.Secret == "" {
			c.Secret = randHex(24)
		}
		if c.AuthMethod == "" {
			c.AuthMethod = "client_secret_basic"
		}
		cj = append(cj, clientJSON{
			ID: c.ID, Secret: c.Secret, RedirectURIs: c.RedirectURIs,
			PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
			BackchannelLogoutURI:   c.BackchannelLogoutURI, BackchannelSession: c.BackchannelLogoutURI != "",
			GrantTypes:    []string{"authorization_code", "refresh_token", "client_credentials"},
			ResponseTypes: []string{"code"}, AuthMethod: c.AuthMethod, JWKS: c.JWKS,
			RequestObjectAlg: c.RequestObjectSigningAlg, RequireRequestObject: c.RequestObjectSigningAlg != "",
			CertBound: opts.TLS && i == 0, DPoPBound: opts.DPoP && i == 0,
		})

		if c.RequestObjectSigningAlg != "" {
			requestObjects = true
		}
	}
	// A resource server of its own introspects tokens (RFC 7662), so that
	// Introspect works whatever client authentication moat's client uses.
	rs := clientJSON{ID: "rs-" + randHex(6), Secret: randHex(24), RedirectURIs: []string{},
		GrantTypes: []string{}, ResponseTypes: []string{}, AuthMethod: "client_secret_basic"}
	cj = append(cj, rs)
	for i := range cj {
		cj[i].IDTokenAlg = opts.IDTokenSigningAlg // every client: the provider has no other key
	}
	settings := map[string]any{
		"cookie_key":            randHex(16),
		"clients":               cj,
		"access_token_ttl":      int(opts.AccessTokenTTL / time.Second),
		"resources":             opts.Resources,
		"default_resource":      opts.DefaultResource,
		"require_par":           opts.RequirePAR,
		"strict_offline_access": opts.StrictOfflineAccess,
		"request_objects":       requestObjects,
		"dpop_require_nonce":    opts.DPoPRequireNonce,
		"dpop_nonce_secret":     randHex(32),
		"fapi2":                 opts.FAPI2,
	}
	switch opts.IDTokenSigningAlg {
	case "":
	case "ES256":
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		settings["jwks"] = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: "es-" + randHex(4), Algorithm: "ES256", Use: "sig"}}}
	default:
		t.Fatalf("realop: IDTokenSigningAlg %q: only ES256", opts.IDTokenSigningAlg)
	}
	op := &OP{Clients: clients, ClientID: clients[0].ID, ClientSecret: clients[0].Secret, rsID: rs.ID, rsSecret: rs.Secret, httpClient: http.DefaultClient}
	if opts.TLS {
		certFile, keyFile, pool := serverCert(t)
		settings["tls_cert"], settings["tls_key"] = certFile, keyFile
		op.CAFile = certFile
		op.httpClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	b, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("node", filepath.Join(Dir(), "provider.mjs"), file)
	cmd.Dir = Dir()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		op.mu.Lock()
		defer op.mu.Unlock()
		op.stderr.Write(p)
		return len(p), nil
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // provider.mjs exits when its stdin closes
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("oidc-provider stderr:\n%s", op.Stderr())
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("provider exited before printing its issuer: %w", err)
			return
		}
		var out struct{ Issuer string }
		if err := json.Unmarshal([]byte(line), &out); err != nil || out.Issuer == "" {
			ready <- fmt.Errorf("provider printed %q, not its issuer", line)
			return
		}
		op.Issuer = out.Issuer
		ready <- nil
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, op.Stderr())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("oidc-provider did not start within 20s\nstderr:\n%s", op.Stderr())
	}
	return op
}

// Stderr is what the provider has written to stderr so far (its warnings,
// back-channel delivery errors, server errors).
func (op *OP) Stderr() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.stderr.String()
}

// Introspect asks the provider whether token is active (RFC 7662), as a
// resource server would, and returns its subject.
func (op *OP) Introspect(token string) (sub string, active bool, err error) {
	out, err := op.Introspection(token)
	if err != nil {
		return "", false, err
	}
	sub, _ = out["sub"].(string)
	active, _ = out["active"].(bool)
	return sub, active, nil
}

// Introspection returns the provider's whole introspection answer for
// token (RFC 7662 §2.2), e.g. its cnf binding (RFC 8705 §3.2).
func (op *OP) Introspection(token string) (map[string]any, error) {
	form := url.Values{"token": {token}}
	req, err := http.NewRequest(http.MethodPost, op.Issuer+"/token/introspection", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(op.rsID), url.QueryEscape(op.rsSecret))
	resp, err := op.httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("introspection: %s %s", resp.Status, b)
	}
	out := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

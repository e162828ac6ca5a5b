package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

const goodYAML = `
listen: "127.0.0.1:4001"
public_url: "https://app.example.com"
oidc:
  issuer: "https://idp.example.com"
  client_id: "spa-bff"
  client_secret: "s3cr3t"
session:
  store: "bolt:///var/lib/moat/sessions.db"
  keys: ["%s"]
  idle_timeout: 20m
routes:
  - prefix: "/resource/api/"
    upstream: "https://api.internal/api/"
cors:
  allowed_origins: ["http://localhost:5173"]
`

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadGoodConfigAndDefaults(t *testing.T) {
	key := session.NewKey()
	cfg, err := Load(writeConfig(t, strings.Replace(goodYAML, "%s", key, 1)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Session.IdleTimeout.D() != 20*time.Minute || cfg.Session.AbsoluteTimeout.D() != 12*time.Hour {
		t.Errorf("timeouts = %v, %v", cfg.Session.IdleTimeout.D(), cfg.Session.AbsoluteTimeout.D())
	}
	if cfg.Server.WriteTimeout.D() != 30*time.Second {
		t.Errorf("server.write_timeout = %v", cfg.Server.WriteTimeout.D())
	}
	if cfg.Routes[0].Token != TokenUser || cfg.CSRF.Mode != CSRFHeader || cfg.OIDC.ClientAuthMethod != AuthSecretBasic {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.OIDC.ClientSecret.Reveal() != "s3cr3t" || cfg.Session.Keys[0].Reveal() != key {
		t.Error("secrets not loaded")
	}
	if len(cfg.Warnings()) != 0 {
		t.Errorf("unexpected warnings: %v", cfg.Warnings())
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := Load(writeConfig(t, "listen: ':1'\npublic_urll: x\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "public_urll") {
		t.Fatalf("err = %v, want it to name public_urll", err)
	}
}

func TestBrokenConfigListsEveryProblem(t *testing.T) {
	body := `
listen: "nope"
public_url: "http://app.example.com/base"
frontend_url: "ftp://x"
oidc:
  issuer: "http://idp.example.com"
  client_auth_method: "client_secret_jwt"
  scopes: ["profile"]
session:
  store: "etcd"
  keys: ["short"]
  idle_timeout: 24h
routes:
  - prefix: "api"
    upstream: "http://api.example.com/api/"
    token: "bogus"
  - prefix: "/auth/x/"
    upstream: "https://api.example.com/x"
  - prefix: "/a/../b/"
    upstream: "https://api.example.com/?q=1"
cors:
  allowed_origins: ["*", "https://ok.example.com/", "http://evil.example.com"]
csrf:
  mode: "cookie"
log:
  level: "loud"
`
	_, err := Load(writeConfig(t, body), noEnv)
	if err == nil {
		t.Fatal("broken config accepted")
	}
	for _, key := range []string{
		"listen:", "public_url:", "frontend_url:", "oidc.issuer:", "oidc.client_id:", "oidc.client_secret:",
		"oidc.client_auth_method:", "oidc.scopes:", "session.store:", "session.keys[0]:",
		"session.idle_timeout:", "routes[0].prefix:", "routes[0].upstream:", "routes[0].token:",
		"routes[1].prefix:", "routes[1].upstream:", "routes[2].prefix:", "routes[2].upstream:",
		"cors.allowed_origins[0]:", "cors.allowed_origins[1]:", "cors.allowed_origins[2]:",
		"csrf.mode:", "log.level:",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestSecretsFromEnvAndFiles(t *testing.T) {
	key1, key2 := session.NewKey(), session.NewKey()
	base := `
public_url: "http://127.0.0.1:4001"
oidc: {issuer: "http://127.0.0.1:9011", client_id: "c"%s}
session: {%s}
`
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	keysFile := filepath.Join(dir, "keys")
	os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	os.WriteFile(keysFile, []byte(key1+"\n\n"+key2+"\n"), 0o600)

	cases := []struct {
		name, oidc, session string
		env                 map[string]string
		wantSecret          string
		wantKeys            int
		wantErr             string
	}{
		{name: "env", env: map[string]string{"MOAT_OIDC_CLIENT_SECRET": "from-env", "MOAT_SESSION_KEYS": key1 + "," + key2}, wantSecret: "from-env", wantKeys: 2},
		{name: "files", oidc: `, client_secret_file: "` + secretFile + `"`, session: `keys_file: "` + keysFile + `"`, wantSecret: "from-file", wantKeys: 2},
		{name: "twice", oidc: `, client_secret: "x"`, env: map[string]string{"MOAT_OIDC_CLIENT_SECRET": "y"}, wantErr: "keep one"},
		{name: "missing file", oidc: `, client_secret_file: "/nonexistent"`, wantErr: "oidc.client_secret_file"},
		{name: "loopback without keys", oidc: `, client_secret: "x"`, wantSecret: "x", wantKeys: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(strings.Replace(base, "%s", tc.oidc, 1), "%s", tc.session, 1)
			cfg, err := Load(writeConfig(t, body), envOf(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OIDC.ClientSecret.Reveal() != tc.wantSecret || len(cfg.Session.Keys) != tc.wantKeys {
				t.Errorf("secret/keys = %q/%d", cfg.OIDC.ClientSecret.Reveal(), len(cfg.Session.Keys))
			}
			if tc.wantKeys == 0 && len(cfg.Warnings()) == 0 {
				t.Error("no warning for a generated key")
			}
		})
	}
}

func TestKeysRequiredOffLoopback(t *testing.T) {
	body := `
public_url: "https://app.example.com"
oidc: {issuer: "https://idp.example.com", client_id: "c", client_secret: "x"}
`
	_, err := Load(writeConfig(t, body), noEnv)
	if err == nil || !strings.Contains(err.Error(), "session.keys: is required") {
		t.Fatalf("err = %v", err)
	}
}

func TestInsecureHTTPNeedsOptInAndWarns(t *testing.T) {
	body := `
public_url: "https://app.example.com"
oidc: {issuer: "https://idp.example.com", client_id: "c", client_secret: "x"}
session: {store: "bolt:///var/lib/moat/s.db", keys: ["` + session.NewKey() + `"]}
routes:
  - {prefix: "/api/", upstream: "http://api.internal/", insecure_http: true}
  - {prefix: "/local/", upstream: "http://127.0.0.1:5001/"}
`
	cfg, err := Load(writeConfig(t, body), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "routes[0].insecure_http") {
		t.Errorf("warnings = %v", w)
	}
}

// TestScopeRuleNotRequestedWarns: a scope rule naming a scope moat never
// asks for is likely a typo or a missing oidc.scopes entry, but an IdP may
// grant it unasked: a warning naming the key, not an error.
func TestScopeRuleNotRequestedWarns(t *testing.T) {
	body := `
public_url: "https://app.example.com"
oidc: {issuer: "https://idp.example.com", client_id: "c", client_secret: "x", scopes: [openid, orders:read]}
session: {store: "bolt:///var/lib/moat/s.db", keys: ["` + session.NewKey() + `"]}
routes:
  - {prefix: "/api/", upstream: "https://api.internal/", require: [{scope: [orders:read, openid]}, {scope: [orders:write]}]}
`
	cfg, err := Load(writeConfig(t, body), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], `routes[0].require[1].scope: "orders:write" is not in oidc.scopes`) {
		t.Errorf("warnings = %v", w)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("routes: [{prefix: 1}]\n"))
	f.Add([]byte("session: {idle_timeout: -1s}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("routes: [{tokn: user, max_body_bytes: 10MiB}]\nrate_limit: {per_ip: 1}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := Parse(raw)
		if cfg == nil {
			if err == nil {
				t.Fatal("no config and no error")
			}
			return
		}
		cfg.SetDefaults()
		cfg.Validate() // must not panic on whatever Parse decoded, as Load validates it
	})
}

func TestStoreURLProblemsNameTheKey(t *testing.T) {
	for _, store := range []string{
		"bolt://relative.db",
		"redis://127.0.0.1:notaport/0",
		"redis://127.0.0.1:6379/0?bogus=1",
		"postgres://u@127.0.0.1/db?table=Bad-Name",
		"postgres://u@127.0.0.1/db?sslmod=disable",
		"cassandra://x",
	} {
		body := `
public_url: "http://127.0.0.1:4001"
oidc: {issuer: "http://127.0.0.1:9011", client_id: "c", client_secret: "s"}
session: {store: "` + store + `"}
`
		_, err := Load(writeConfig(t, body), noEnv)
		if err == nil || !strings.Contains(err.Error(), "session.store: ") {
			t.Errorf("%s: err = %v", store, err)
		}
	}
}

// Every insecure_* option, wherever it sits in the configuration, warns
// by name when set: the fields are found by reflection, so an option
// added without a warning fails here.
func TestEveryInsecureOptionWarns(t *testing.T) {
	base := func() *Config {
		c := &Config{PublicURL: "https://app.example.com",
			OIDC:    OIDC{Issuer: "https://idp.example.com", ClientID: "c"},
			Session: Session{Store: "bolt:///var/lib/moat/s.db", Keys: []secret.String{secret.String(session.NewKey())}},
			Routes:  []Route{{Prefix: "/api/", Upstream: "https://api.example.com/"}}}
		c.SetDefaults()
		return c
	}
	if w := base().Warnings(); len(w) != 0 {
		t.Fatalf("warnings without any insecure option: %v", w)
	}
	c, found := base(), 0
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
				f := v.Field(i)
				if !f.CanSet() || name == "" {
					continue
				}
				key := strings.TrimPrefix(path+"."+name, ".")
				if strings.HasPrefix(name, "insecure_") && f.Kind() == reflect.Bool {
					found++
					f.SetBool(true)
					if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, key) {
						t.Errorf("%s set: no warning names it (warnings: %q)", key, w)
					}
					f.SetBool(false)
					continue
				}
				walk(f, key)
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	if found < 3 {
		t.Errorf("found %d insecure_* options, want at least 3", found)
	}
}

// TestStoreURLFromEnvOrFile: a store URL with a password can come from
// MOAT_SESSION_STORE or session.store_file, so it never sits in a config
// file or a ConfigMap; given twice, it is an error naming both.
func TestStoreURLFromEnvOrFile(t *testing.T) {
	const url = "redis://:s3cret@127.0.0.1:6379/0"
	key := session.NewKey()
	file := filepath.Join(t.TempDir(), "store")
	os.WriteFile(file, []byte(url+"\n"), 0o600)
	body := func(extra string) string {
		return `
public_url: "http://127.0.0.1:4001"
oidc: {issuer: "http://127.0.0.1:9011", client_id: "c", client_secret: "x"}
session: {keys: ["` + key + `"]` + extra + `}
`
	}
	for _, tc := range []struct {
		name, extra string
		env         map[string]string
		want, err   string
	}{
		{name: "env", env: map[string]string{"MOAT_SESSION_STORE": url}, want: url},
		{name: "file", extra: `, store_file: "` + file + `"`, want: url},
		{name: "inline", extra: `, store: "` + url + `"`, want: url},
		{name: "none", want: "memory"},
		{name: "twice", extra: `, store: "memory"`, env: map[string]string{"MOAT_SESSION_STORE": url}, err: "session.store: given in session.store and MOAT_SESSION_STORE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, body(tc.extra)), envOf(tc.env))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("the error shows the store password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Session.Store != tc.want {
				t.Fatalf("session.store = %q, want %q", cfg.Session.Store, tc.want)
			}
		})
	}
}

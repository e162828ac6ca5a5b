package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

// A file with unknown keys, values of the wrong type and invalid values
// gets every problem in one run, each by key path with a fix, never by Go
// type; a key that did not decode is not reported a second time by
// validation.
func TestLoadReportsDecodeAndValidationProblemsTogether(t *testing.T) {
	body := `
public_url: "https://app.example.com"
listn: ":4001"
oidc:
  issuer: ["https://idp.example.com"]
  client_id: "c"
  client_secret: "s"
  scopes: openid
  timeout: 30
session:
  keys: ["` + session.NewKey() + `"]
  cache_size: many
routes:
  - prefix: "/api/"
    upstream: "https://api.internal/"
    tokn: user
    max_body_bytes: 10 parsecs
csrf:
  mode: cookie
log:
  subject: maybe
rate_limit:
  per_ip: 100
server:
  max_header_bytes: 64KiB
  max_body_bytes: 2MiB
`
	_, err := Load(writeConfig(t, body), noEnv)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"listn: unknown key (did you mean listen?) (line 3)",
		"oidc.issuer: expected a single value, got a list (line 5)",
		`oidc.scopes: expected a list (e.g. [a, b] or one "- item" per line), got "openid" (line 8)`,
		`oidc.timeout: "30" is not a duration like 90s, 15m or 12h (line 9)`,
		`session.cache_size: expected a whole number, got "many" (line 12)`,
		"routes[0].tokn: unknown key (did you mean token?) (line 16)",
		`routes[0].max_body_bytes: "10 parsecs" is not a size like 10MiB, 32KiB or 1048576 (bytes) (line 17)`,
		`csrf.mode: "cookie" is not a mode`,
		`log.subject: expected true or false, got "maybe" (line 21)`,
		`rate_limit.per_ip: expected a mapping of keys (burst, rate), got "100" (line 23)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	for _, never := range []string{"config.", "not found in type", "cannot unmarshal", "oidc.issuer: is required", "server.max"} {
		if strings.Contains(msg, never) {
			t.Errorf("%q in:\n%s", never, msg)
		}
	}
	if n := len(flatten(err)); n != 10 {
		t.Errorf("%d problems, want 10:\n%s", n, msg)
	}
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Error("no *KeyError in the joined error")
	}
}

func TestUnknownKeySuggestions(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sesion: {}", "sesion: unknown key (did you mean session?)"},
		{"oidc: {isuer: x}", "oidc.isuer: unknown key (did you mean issuer?)"},
		{"oidc: {clientid: x}", "oidc.clientid: unknown key (did you mean client_id?)"},
		{"session: {keys_fiel: x}", "session.keys_fiel: unknown key (did you mean keys_file?)"},
		{"routes: [{}, {upstrem: x}]", "routes[1].upstrem: unknown key (did you mean upstream?)"},
		{"rate_limit: {per_ip: {rate: 1, brust: 2}}", "rate_limit.per_ip.brust: unknown key (did you mean burst?)"},
		{"csrf: {zzzzzz: 1}", "csrf.zzzzzz: unknown key; known keys here: mode"},
		{"log: {level: info, level: debug}", "log.level: given twice; keep one (line 1)"},
		{"- a", "(top level): expected a mapping of keys"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "10MiB": 10 << 20, "32KiB": 32 << 10, "32kib": 32 << 10, "1GiB": 1 << 30,
		"5MB": 5_000_000, "100kB": 100_000, "2 MiB": 2 << 20, "512B": 512, "0": 0, "1_000": 1000,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "+1", "1.5MiB", "10 parsecs", "ten", "0x10", "9999999999GiB", "1e6"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

// Sizes with units are accepted wherever a *_bytes key is, as the README
// writes them, and plain byte counts still work.
func TestSizesWithUnits(t *testing.T) {
	cfg, err := Parse([]byte(`
server: {max_header_bytes: 64KiB, max_body_bytes: 1048576}
routes: [{prefix: /a/, upstream: "https://a/", max_body_bytes: 10MiB}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.MaxHeaderBytes != 64<<10 || cfg.Server.MaxBodyBytes != 1<<20 || cfg.Routes[0].MaxBodyBytes != 10<<20 {
		t.Errorf("sizes = %d %d %d", cfg.Server.MaxHeaderBytes, cfg.Server.MaxBodyBytes, cfg.Routes[0].MaxBodyBytes)
	}
}

// Without session.keys moat generates a key per process: harmless with the
// memory store (its sessions end at a restart anyway, and the warning says
// so), a trap with a persistent one (the next start could not open the
// sessions and would refuse to run), so keys are then required.
func TestKeysRequiredWithPersistentStores(t *testing.T) {
	for store, wantErr := range map[string]bool{
		"memory": false, "bolt:///var/lib/moat/sessions.db": true,
		"redis://127.0.0.1:6379/0": true, "postgres://u@127.0.0.1/db": true,
	} {
		body := `
public_url: "http://127.0.0.1:4001"
oidc: {issuer: "http://127.0.0.1:9011", client_id: "c", client_secret: "s"}
session: {store: "` + store + `"}
`
		cfg, err := Load(writeConfig(t, body), noEnv)
		if wantErr {
			if err == nil || !strings.Contains(err.Error(), "session.keys: is required with a persistent session.store") {
				t.Errorf("%s: err = %v", store, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", store, err)
		}
		w := strings.Join(cfg.Warnings(), "\n")
		if !strings.Contains(w, "session.keys is empty") || !strings.Contains(w, "memory store") {
			t.Errorf("%s: warnings = %s", store, w)
		}
	}
}

// "Off loopback" is about public_url's host, never listen (README).
func TestOffLoopbackMeansPublicURLHost(t *testing.T) {
	for _, tc := range []struct {
		listen, publicURL string
		loopback          bool
	}{
		{"0.0.0.0:4001", "http://127.0.0.1:4001", true},
		{"0.0.0.0:4001", "http://app.localhost:4001", true},
		{"127.0.0.1:4001", "https://app.example.com", false},
		{"[::1]:4001", "https://app.example.com", false},
	} {
		c := &Config{Listen: tc.listen, PublicURL: tc.publicURL}
		if c.IsLoopback() != tc.loopback {
			t.Errorf("listen %s, public_url %s: IsLoopback = %v", tc.listen, tc.publicURL, !tc.loopback)
		}
	}
}

// A secret written where a list or a section belongs (one level too high,
// a typo of its key) is named by its key and line, never repeated: the
// error is printed by moat check and logged at startup.
func TestDecodeErrorsNeverRepeatASecret(t *testing.T) {
	for _, body := range []string{
		"session:\n  keys: S3CRETVALUE\n",
		"admin: S3CRETVALUE\n",
		"oidc: S3CRETVALUE\n",
		"S3CRETVALUE\n",
		"oidc:\n  client_secert: S3CRETVALUE\n",
		"admin:\n  tokn: S3CRETVALUE\n",
	} {
		_, err := Load(writeConfig(t, "public_url: \"https://app.example.com\"\n"+body), noEnv)
		if err == nil {
			t.Errorf("%q: accepted", body)
			continue
		}
		if strings.Contains(err.Error(), "S3CRETVALUE") {
			t.Errorf("%q: the error repeats the secret:\n%v", body, err)
		}
	}
}

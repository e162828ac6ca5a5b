package onboard

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/session"
)

var (
	// A block may be indented (inside a list item): its indentation is
	// taken off every line.
	yamlBlock = regexp.MustCompile("(?sm)^( *)```yaml\n(.*?)^ *```")
	// fileKey finds a key naming a file or directory, quoted or not, in
	// block or flow style: client_secret_file: "/run/x", {dir: /srv/shop}.
	fileKey = regexp.MustCompile(`\b(\w+_file|dir): *("[^"\n]*"|[^\s,}#]+)`)
)

// TestDocsConfigsLoad loads every moat configuration shown in docs/
// (completed with a public_url, an issuer and client_id, and session keys
// where a snippet shows only its own part), so the docs name only keys and
// values moat accepts. README.md's configurations are run by cmd/moat's
// docs walk.
func TestDocsConfigsLoad(t *testing.T) {
	moatBlock := regexp.MustCompile(`(?m)^(oidc|routes|session|forward_auth|public_url|listen|frontends):`)
	n := 0
	for _, doc := range []string{"providers.md", "migrate.md", "authorization.md", "gateways.md", "operations.md"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		inDoc := 0
		for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			body := strings.ReplaceAll("\n"+m[2], "\n"+m[1], "\n")[1:]
			if !moatBlock.MatchString(body) {
				continue // another program's configuration (Dex, Kubernetes, Envoy, alert rules)
			}
			n++
			inDoc++
			if !strings.Contains(body, "issuer:") {
				const idp = "\n  issuer: \"https://idp.example.com\"\n  client_id: \"spa-bff\"\n"
				if loc := regexp.MustCompile(`(?m)^oidc:\n`).FindStringIndex(body); loc != nil {
					body = body[:loc[0]] + "oidc:" + idp + body[loc[1]:]
				} else {
					body += "oidc:" + idp
				}
			}
			dir := t.TempDir()
			body = fileKey.ReplaceAllStringFunc(body, func(s string) string {
				key := fileKey.FindStringSubmatch(s)[1]
				return key + ": " + docFile(t, dir, key)
			})
			if !strings.Contains(body, "public_url:") {
				body = "public_url: \"https://app.example.com\"\n" + body
			}
			env := map[string]string{}
			if !strings.Contains(body, "client_secret_file:") {
				env["MOAT_OIDC_CLIENT_SECRET"] = "client-secret"
			}
			if !strings.Contains(body, "keys_file:") {
				env["MOAT_SESSION_KEYS"] = session.NewKey()
			}
			path := filepath.Join(dir, "moat.yaml")
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
				t.Errorf("%s: a configuration does not load:\n%s\n%v", doc, m[2], err)
			}
		}
		if inDoc == 0 {
			t.Errorf("found no moat configuration in docs/%s", doc)
		}
	}
	if n < 18 {
		t.Fatalf("found %d configurations in the docs, want at least 18", n)
	}
}

// docFile makes, under dir, what a config's file key names: a file holding a
// valid value for the key, or a SPA directory with an index.html, so that a
// doc may show its real deployment paths (/run/secrets/..., /srv/shop).
func docFile(t *testing.T, dir, key string) string {
	t.Helper()
	content := map[string]string{
		"client_secret_file": "client-secret",
		"keys_file":          session.NewKey(),
		"token_file":         session.NewKey(), // admin.token: at least 32 characters
	}
	p, err := os.MkdirTemp(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	if key == "dir" { // spa.dir
		if err := os.WriteFile(filepath.Join(p, "index.html"), []byte("<!doctype html>\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, ok := content[key]
	if !ok {
		t.Fatalf("a doc shows %s: teach docFile what such a file holds", key)
	}
	p = filepath.Join(p, key)
	if err := os.WriteFile(p, []byte(c+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

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
	yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")
	fileKey   = regexp.MustCompile(`(client_secret_file|keys_file): "([^"]+)"`)
)

// TestDocsConfigsLoad loads every moat configuration shown in docs/
// (completed with a public_url, an issuer and client_id, and session keys
// where a snippet shows only its own part), so the docs name only keys and
// values moat accepts. README.md's configurations are run by cmd/moat's
// docs walk.
func TestDocsConfigsLoad(t *testing.T) {
	moatBlock := regexp.MustCompile(`(?m)^(oidc|routes|session|forward_auth|public_url|listen):`)
	n := 0
	for _, doc := range []string{"providers.md", "migrate.md", "authorization.md", "gateways.md", "operations.md"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		inDoc := 0
		for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			body := m[1]
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
				kv := fileKey.FindStringSubmatch(s)
				content := "client-secret"
				if kv[1] == "keys_file" {
					content = session.NewKey()
				}
				p := filepath.Join(dir, kv[1])
				if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return kv[1] + ": " + p
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
				t.Errorf("%s: a configuration does not load:\n%s\n%v", doc, m[1], err)
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

package config

import (
	"strconv"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

// routes[].forward_headers refuses every header that must never reach an
// upstream, naming the key path; an app's own headers pass.
func TestForwardHeadersRefuseWhatMustNeverPass(t *testing.T) {
	refused := []string{
		"Cookie", "authorization", "Proxy-Authorization", "Host", "Connection", "Keep-Alive", "Transfer-Encoding",
		"Upgrade", "TE", "Trailer", "Forwarded", "X-Forwarded-For", "x-forwarded-host", "X-Forwarded-User",
		"X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method", "X-Original-URL", "X-Original-Forwarded-For",
		"X-Rewrite-URL", "X-Host", "X-Envoy-Original-Path", "X-Envoy-External-Address", "X-Real-IP", "Client-IP",
		"True-Client-IP", "CF-Connecting-IP", "X-Cluster-Client-IP", "Fastly-Client-IP", "Remote-User",
		"X-Remote-User", "X-Webauth-User", "X-WEBAUTH-EMAIL", "X-Auth-Request-User", "X-Auth-Request-Access-Token",
		"X-Amzn-Oidc-Data", "X-Amzn-Oidc-Identity", "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME",
		"X-MS-TOKEN-AAD-ACCESS-TOKEN", "X-Goog-Authenticated-User-Email", "X-Goog-IAP-JWT-Assertion",
		"Cf-Access-Authenticated-User-Email", "X-Pomerium-Jwt-Assertion", "X-CSRF", "Expect", "DPoP",
		"bad header", "", "X-Ok\r\nX-Injected",
	}
	allowed := []string{"X-Tenant", "Idempotency-Key", "Prefer", "X-App-Version"}
	body := `
public_url: "https://app.example.com"
oidc: {issuer: "https://idp.example.com", client_id: "c", client_secret: "x"}
session: {store: "bolt:///var/lib/moat/s.db", keys: ["` + session.NewKey() + `"]}
routes:
  - prefix: "/api/"
    upstream: "https://api.internal/"
    forward_headers: [` + quoteAll(append(append([]string{}, allowed...), refused...)) + `]
`
	_, err := Load(writeConfig(t, body), noEnv)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for i, h := range refused {
		key := "routes[0].forward_headers[" + strconv.Itoa(len(allowed)+i) + "]: "
		if !strings.Contains(msg, key) {
			t.Errorf("%q not refused (want an error naming %s)", h, key)
		}
	}
	for i := range allowed {
		if key := "routes[0].forward_headers[" + strconv.Itoa(i) + "]"; strings.Contains(msg, key) {
			t.Errorf("%s refused: %s", allowed[i], msg)
		}
	}
	if !strings.Contains(msg, "method override") || !strings.Contains(msg, "identity claim") {
		t.Errorf("errors do not say why: %s", msg)
	}

	body = strings.Replace(body, quoteAll(append(append([]string{}, allowed...), refused...)), quoteAll(append(allowed, "x-tenant")), 1)
	if _, err := Load(writeConfig(t, body), noEnv); err == nil || !strings.Contains(err.Error(), "routes[0].forward_headers[4]: \"x-tenant\" is listed twice") {
		t.Errorf("duplicate: %v", err)
	}
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = `"` + strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(v) + `"`
	}
	return strings.Join(q, ", ")
}

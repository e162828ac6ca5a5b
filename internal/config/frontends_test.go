package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/session"
)

const twoFrontends = `
listen: "127.0.0.1:4001"
session:
  store: "bolt:///var/lib/moat/sessions.db"
  keys: ["%s"]
frontends:
  - name: shop
    public_url: "https://shop.example.com"
    oidc:
      issuer: "https://idp.example.com"
      client_id: "shop-bff"
      client_secret: "s1"
      scopes: [openid, email]
    routes:
      - prefix: "/api/"
        upstream: "https://api.internal/shop/"
  - name: admin
    public_url: "https://admin.example.com"
    frontend_url: "https://admin.example.com/app/"
    oidc:
      issuer: "https://staff-idp.example.com"
      client_id: "admin-bff"
      client_secret_file: "%s"
    cors:
      allowed_origins: ["https://cdn.example.com"]
    csrf:
      mode: fetch-metadata
`

func loadFrontends(t *testing.T, body string) (*Config, error) {
	t.Helper()
	secretFile := writeConfig(t, "s2\n")
	body = strings.Replace(strings.Replace(body, "%s", session.NewKey(), 1), "%s", secretFile, 1)
	return Load(writeConfig(t, body), noEnv)
}

func TestFrontendsLoad(t *testing.T) {
	cfg, err := loadFrontends(t, twoFrontends)
	if err != nil {
		t.Fatal(err)
	}
	views := cfg.Views()
	if len(views) != 2 {
		t.Fatalf("%d views", len(views))
	}
	shop, admin := views[0], views[1]
	if shop.Name != "shop" || admin.Name != "admin" {
		t.Errorf("names %q %q", shop.Name, admin.Name)
	}
	if shop.OIDC.ClientSecret.Reveal() != "s1" || admin.OIDC.ClientSecret.Reveal() != "s2" {
		t.Error("each frontend has its own client secret, from the file or inline")
	}
	if !slices.Equal(shop.OIDC.Scopes, []string{"openid", "email"}) || len(admin.OIDC.Scopes) != 4 {
		t.Errorf("scopes: %v, %v (defaults per frontend)", shop.OIDC.Scopes, admin.OIDC.Scopes)
	}
	if shop.Routes[0].Token != TokenUser || shop.CSRF.Mode != CSRFHeader || admin.CSRF.Mode != CSRFFetchMetadata {
		t.Error("per-frontend defaults not set")
	}
	if admin.PostLogoutRedirect() != "https://admin.example.com/app/" || shop.RedirectURI() != "https://shop.example.com/auth/callback" {
		t.Errorf("landing pages: %s %s", admin.PostLogoutRedirect(), shop.RedirectURI())
	}
	if shop.Session.Store != cfg.Session.Store || admin.Session.IdleTimeout != cfg.Session.IdleTimeout {
		t.Error("shared keys are the top level's")
	}
	if cfg.OIDC.ClientAuthMethod != "" || cfg.CSRF.Mode != "" {
		t.Error("the top-level frontend keys stay empty with frontends")
	}
	if views := (&Config{PublicURL: "https://a"}).Views(); len(views) != 1 || views[0].Name != "" {
		t.Error("without frontends the one view is the config itself")
	}
}

func TestFrontendsErrors(t *testing.T) {
	swap := func(old, new string) string { return strings.Replace(twoFrontends, old, new, 1) }
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"client id missing", swap(`client_id: "admin-bff"`, ""), []string{"frontends[1].oidc.client_id: is required"}},
		{"typo", swap("client_id: \"shop-bff\"", "client_idd: x"), []string{"frontends[0].oidc.client_idd: unknown key (did you mean client_id?)"}},
		{"bad route", swap(`prefix: "/api/"`, `prefix: "/auth/"`), []string{`frontends[0].routes[0].prefix: "/auth/" overlaps /auth/`}},
		{"same host", swap("https://admin.example.com\"", "https://SHOP.example.com:443\""), []string{"frontends[1].public_url: SHOP.example.com:443 is also frontends[0]'s host"}},
		{"same name", swap("name: admin", "name: shop"), []string{`frontends[1].name: "shop" is also frontends[0].name`}},
		{"bad name", swap("name: admin", "name: Admin_1"), []string{`frontends[1].name: "Admin_1" may hold only`}},
		{"no name", swap("name: admin", ""), []string{"frontends[1].name: is required"}},
		{"top-level oidc", "oidc:\n  client_id: x\n" + twoFrontends, []string{"oidc.client_id: is a frontend's key, set at the top level beside frontends"}},
		{"top-level routes", "routes: [{prefix: /x/, upstream: 'https://a/'}]\n" + twoFrontends, []string{"routes: is a frontend's key"}},
		{"shared key in a frontend", swap("    cors:", "    session:\n      idle_timeout: 1m\n    cors:"), []string{"frontends[1].session: unknown key"}},
		{"not a list", "frontends: {name: a}\n", []string{"frontends: expected a list"}},
		{"secret twice", swap(`client_secret_file: "%s"`, `client_secret_file: "%s"`+"\n      client_secret: x"), []string{"frontends[1].oidc.client_secret: given in frontends[1].oidc.client_secret and frontends[1].oidc.client_secret_file"}},
		{"http off loopback", swap("https://shop.example.com", "http://shop.example.com"), []string{"frontends[0].public_url: "}},
		{"same host and path", swap("https://admin.example.com\"", "https://shop.example.com/\""), []string{"frontends[1].public_url: shop.example.com is also frontends[0]'s host and path"}},
		{"path with dots", swap("https://admin.example.com\"", "https://admin.example.com/a/../b\""), []string{`frontends[1].public_url: path "/a/../b"`}},
		{"path over moat's own", swap("https://admin.example.com\"", "https://shop.example.com/auth\""), []string{"frontends[1].public_url: path /auth would take frontends[0]'s /auth/, which moat serves itself"}},
		{"path over a route", swap("https://admin.example.com\"", "https://shop.example.com/api/admin\""), []string{"frontends[1].public_url: path /api/admin overlaps frontends[0].routes[0].prefix /api/"}},
		{"route under a path", swap("https://admin.example.com\"", "https://shop.example.com/api\""), []string{"frontends[1].public_url: path /api overlaps frontends[0].routes[0].prefix /api/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFrontends(t, tc.body)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// Shared keys are reported once, not once per frontend.
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.Count(err.Error(), line) > 1 {
					t.Errorf("reported twice: %s", line)
				}
			}
		})
	}
}

// TestFrontendKeysRoundTrip: frontend and setFrontend carry every key of
// a Frontend, so that no per-frontend key silently stays the top level's.
func TestFrontendKeysRoundTrip(t *testing.T) {
	var f Frontend
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString("x")
		case reflect.Slice:
			fv.Set(reflect.MakeSlice(fv.Type(), 1, 1))
		case reflect.Struct:
			// One field set is enough to tell it from zero.
			switch first := fv.Field(0); first.Kind() {
			case reflect.String:
				first.SetString("x")
			case reflect.Slice:
				first.Set(reflect.MakeSlice(first.Type(), 1, 1))
			}
		}
		if v.Field(i).IsZero() {
			t.Fatalf("could not fill %s", v.Type().Field(i).Name)
		}
	}
	var c Config
	c.setFrontend(f)
	if got := c.frontend(); !reflect.DeepEqual(got, f) {
		t.Errorf("round trip lost keys:\n%+v\n%+v", got, f)
	}
	for _, k := range appKeys {
		if _, ok := structFields(reflect.TypeFor[Config]())[k]; !ok {
			t.Errorf("frontend key %s is not a top-level key", k)
		}
	}
}

// TestFrontendsMounted: frontends may share an origin at distinct paths;
// each one's redirect_uri and landing pages carry its path.
func TestFrontendsMounted(t *testing.T) {
	body := strings.Replace(twoFrontends, "https://admin.example.com\"", "https://shop.example.com/admin/\"", 1)
	body = strings.Replace(body, "frontend_url: \"https://admin.example.com/app/\"", "", 1)
	cfg, err := loadFrontends(t, body)
	if err != nil {
		t.Fatal(err)
	}
	admin := cfg.Views()[1]
	if admin.RedirectURI() != "https://shop.example.com/admin/auth/callback" || admin.PostLogoutRedirect() != "https://shop.example.com/admin/" {
		t.Errorf("redirect_uri %s, post-logout %s", admin.RedirectURI(), admin.PostLogoutRedirect())
	}
	if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "frontends[1].public_url shares the origin https://shop.example.com:443 with frontends[0]") {
		t.Errorf("warnings: %s", w)
	}
	// A root frontend's route that the mount does not touch is fine.
	for _, prefix := range []string{"/adminx/", "/ad/"} {
		if _, err := loadFrontends(t, strings.Replace(body, `prefix: "/api/"`, `prefix: "`+prefix+`"`, 1)); err != nil {
			t.Errorf("route %s beside /admin: %v", prefix, err)
		}
	}
	top := strings.Replace(twoFrontends, "frontends:", "public_url: \"https://a.example.com/x\"\nfrontends:", 1)
	if _, err := loadFrontends(t, top); err == nil || !strings.Contains(err.Error(), "public_url: is a frontend's key") {
		t.Errorf("top-level public_url beside frontends: %v", err)
	}
}

func TestFrontendsWarn(t *testing.T) {
	body := strings.Replace(twoFrontends, `upstream: "https://api.internal/shop/"`, `upstream: "http://api.internal/shop/"`+"\n        insecure_http: true", 1)
	cfg, err := loadFrontends(t, body)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"frontends[0].routes[0].insecure_http is set", "frontends[1].csrf.mode is fetch-metadata"}
	got := strings.Join(cfg.Warnings(), "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("warnings lack %q:\n%s", w, got)
		}
	}
	if strings.Count(got, "\n") != len(want)-1 {
		t.Errorf("warnings: %s", got)
	}
}

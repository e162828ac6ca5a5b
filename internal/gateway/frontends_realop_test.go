package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/realop"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

// TestRealOPFrontends: one real oidc-provider with two clients, one moat
// serving frontend a (client a) at http://localhost:PORT and b (client b)
// at http://127.0.0.1:PORT, or at http://localhost:PORT/admin. bob signs
// in at both, in two browsers; ending his provider session in the first
// sends client a's logout token to a, which ends a's session only: b's
// session of the same sub lives, until his session in the second ends.
func TestRealOPFrontends(t *testing.T) {
	realop.Require(t)
	for layout, b := range map[string]func(port string) string{
		"hosts": func(port string) string { return "http://127.0.0.1:" + port },
		"paths": func(port string) string { return "http://localhost:" + port + "/admin" },
	} {
		t.Run(layout, func(t *testing.T) { realOPFrontends(t, b) })
	}
}

// realOPFrontends runs TestRealOPFrontends with b's public_url at bAt.
func realOPFrontends(t *testing.T, bAt func(port string) string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	urls := map[string]string{"a": "http://localhost:" + port, "b": bAt(port)}
	var clients []realop.Client
	for _, name := range []string{"a", "b"} {
		clients = append(clients, realop.Client{ID: "client-" + name, Secret: "secret-" + name + "-" + session.NewKey()[:16],
			RedirectURIs: []string{urls[name] + "/auth/callback"}, PostLogoutRedirectURIs: []string{urls[name] + "/"},
			BackchannelLogoutURI: urls[name] + "/auth/backchannel-logout"})
	}
	op := realop.Start(t, realop.Options{Clients: clients})
	cfg := &config.Config{Listen: ln.Addr().String(), Session: config.Session{Keys: []secret.String{secret.String(session.NewKey())}}}
	for i, name := range []string{"a", "b"} {
		cfg.Frontends = append(cfg.Frontends, config.Frontend{Name: name, PublicURL: urls[name],
			OIDC: config.OIDC{Issuer: op.Issuer, ClientID: clients[i].ID, ClientSecret: secret.String(clients[i].Secret),
				Scopes: []string{"openid", "profile", "email"}}})
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	gw, err := gateway.New(context.Background(), cfg, log, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := gateway.NewHTTPServer(cfg, gw, log)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); gw.Close() })

	checksession := func(ua *realop.UserAgent, name string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("GET", urls[name]+"/auth/checksession", nil)
		p, err := ua.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.Unmarshal(p.Body, &out)
		return out
	}
	browsers := map[string]*realop.UserAgent{}
	for _, name := range []string{"a", "b"} {
		ua := op.UserAgent("bob")
		page, err := ua.Browse(context.Background(), urls[name]+"/auth/login?returnTo=/after-login")
		if err != nil || page.URL.Path != "/after-login" {
			t.Fatalf("login at %s: %v, ended at %s: %.300s", name, err, page.URL, page.Body)
		}
		s := checksession(ua, name)
		if u, _ := s["user"].(map[string]any); s["loggedIn"] != true || u["sub"] == nil {
			t.Fatalf("%s: %v", name, s)
		}
		browsers[name] = ua
	}
	if subA, subB := checksession(browsers["a"], "a")["user"].(map[string]any)["sub"], checksession(browsers["b"], "b")["user"].(map[string]any)["sub"]; subA != subB {
		t.Fatalf("subs differ: %v %v", subA, subB)
	}
	// b's browser holds no cookie for a's host, and the other way round.
	if s := checksession(browsers["a"], "b"); s["loggedIn"] != false {
		t.Fatalf("a's browser is logged in at b: %v", s)
	}

	endSession := func(name string) {
		t.Helper()
		page, err := browsers[name].Browse(context.Background(), op.Issuer+"/session/end")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(op.Issuer, page.URL.Scheme+"://"+page.URL.Host) {
			t.Fatalf("end session ended at %s", page.URL)
		}
		for deadline := time.Now().Add(5 * time.Second); checksession(browsers[name], name)["loggedIn"] != false; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's session survived the provider's logout; provider: %s", name, op.Stderr())
			}
		}
	}
	endSession("a")
	time.Sleep(time.Second) // past session.cache_ttl: b's answer is the store's
	if s := checksession(browsers["b"], "b"); s["loggedIn"] != true {
		t.Errorf("b's session of the same sub ended with a's back-channel logout: %v", s)
	}
	// b's own provider logout reaches b's back-channel URI (under /admin
	// when b is mounted there).
	endSession("b")
	if !strings.Contains(logs.String(), `"event":"backchannel_logout"`) || strings.Contains(op.Stderr(), "backchannel.error") {
		t.Errorf("no clean back-channel logout; provider: %s\n%s", op.Stderr(), logs)
	}
}

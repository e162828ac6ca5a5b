package moat_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-bff/moat"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// TestEmbedding builds moat the way a Go backend outside this module does:
// only the public package's names.
func TestEmbedding(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	cfg := &moat.Config{
		PublicURL: "http://127.0.0.1:4001",
		OIDC: moat.OIDCConfig{Issuer: op.Issuer, ClientID: op.ClientID, ClientSecret: moat.Secret(op.ClientSecret),
			RefreshSkew: moat.Duration(time.Minute)},
		Routes: []moat.Route{{Prefix: "/api/orders/", Upstream: "http://127.0.0.1:9/orders/"}},
		CSRF:   moat.CSRFConfig{Mode: "header"},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := moat.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	gw.Handle("GET /api/me", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := moat.User(r.Context())
		io.WriteString(w, u.Subject)
	}))
	req := httptest.NewRequest("GET", "/api/me", nil)
	req.Header.Set("X-CSRF", "1")
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("local API without a session: %d", w.Code)
	}
	if err := gw.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
	if gw.ForwardAuthHandler() != nil {
		t.Error("a forward-auth handler without forward_auth.listen")
	}

	// With forward_auth.listen, the check is there, and not on ServeHTTP.
	cfg.ForwardAuth = moat.ForwardAuthConfig{Listen: "127.0.0.1:4003", TrustedProxies: []string{"127.0.0.1"}}
	fgw, err := moat.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer fgw.Close()
	check := func(h http.Handler) int {
		req := httptest.NewRequest("GET", "/_moat/forward-auth", nil)
		req.RemoteAddr = "127.0.0.1:5000"
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/api/orders/1")
		req.Header.Set("X-CSRF", "1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if fgw.ForwardAuthHandler() == nil || check(fgw.ForwardAuthHandler()) != http.StatusUnauthorized || check(fgw) != http.StatusNotFound {
		t.Error("forward-auth: want 401 without a session on its handler, 404 on the browser handler")
	}
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/csrf"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/policy"
	"github.com/moat-bff/moat/internal/proxy"
	"github.com/moat-bff/moat/internal/session"
)

// TestRequireLocalHandler: Require judges a local handler's user like a
// proxied route's, and h runs only when every rule holds.
func TestRequireLocalHandler(t *testing.T) {
	p, err := policy.New([]policy.Rule{{Claim: "roles", AnyOf: []string{"admin"}}, {ACR: []string{"mfa"}}, {Scope: []string{"orders:read"}}}, "https://moat.example/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		claims string
		scope  string
		status int
		code   string
	}{
		{`{"roles":["admin"],"acr":"mfa"}`, "openid orders:read", http.StatusOK, ""},
		{`{"roles":["user"],"acr":"mfa"}`, "openid orders:read", http.StatusForbidden, "forbidden"},
		{`{"roles":["admin"],"acr":"mfa"}`, "openid", http.StatusForbidden, "forbidden"},
		{`{"roles":["admin"]}`, "orders:read", http.StatusUnauthorized, "step_up_required"},
		{``, "", http.StatusForbidden, "forbidden"},
	} {
		ran := false
		h := Require(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true }))
		req := httptest.NewRequest("GET", "/api/x", nil)
		if tc.claims != "" {
			l := &session.Loaded{Session: session.Session{Subject: "alice", Claims: json.RawMessage(tc.claims), Tokens: session.Tokens{Scope: tc.scope}}}
			req = req.WithContext(withUser(req.Context(), l))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var body struct{ Error, Login string }
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tc.status || body.Error != tc.code || ran != (tc.status == http.StatusOK) {
			t.Errorf("claims %s: %d %s (handler ran: %v), want %d %q", tc.claims, w.Code, w.Body, ran, tc.status, tc.code)
		}
		if tc.code == "step_up_required" && body.Login != "https://moat.example/auth/login?acr_values=mfa" {
			t.Errorf("step-up login = %q", body.Login)
		}
	}
}

// TestRequireUsesTheRequestClock: max_age is judged at the request's
// reading of the session manager's clock, not at the wall clock, so a
// local handler and a proxied route agree on a session's freshness.
func TestRequireUsesTheRequestClock(t *testing.T) {
	p, err := policy.New([]policy.Rule{{MaxAge: 5 * time.Minute}}, "https://moat.example/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	authTime := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &session.Loaded{Session: session.Session{Subject: "alice", Claims: json.RawMessage(fmt.Sprintf(`{"auth_time":%d}`, authTime.Unix()))}}
	for _, tc := range []struct {
		now  time.Time
		want int
	}{
		{authTime.Add(time.Minute), http.StatusOK},
		{authTime.Add(10 * time.Minute), http.StatusUnauthorized},
	} {
		h := Require(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		ctx := context.WithValue(withUser(context.Background(), l), infoKey{}, &reqInfo{now: tc.now})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/api/x", nil).WithContext(ctx))
		if w.Code != tc.want {
			t.Errorf("auth_time %s ago: %d %s, want %d", tc.now.Sub(authTime), w.Code, w.Body, tc.want)
		}
	}
}

// TestRouteRulesWhateverTheTokenType: a route built with rules but no user
// token (none here; config validation refuses that, but proxy.Route does
// not) is refused, not served with its rules skipped.
func TestRouteRulesWhateverTheTokenType(t *testing.T) {
	p, err := policy.New([]policy.Rule{{Claim: "roles", AnyOf: []string{"admin"}}}, "https://moat.example/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := csrf.New("header", "https://moat.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{csrf: cp, sessions: session.NewManager(session.ManagerOptions{})}
	for _, tt := range []string{config.TokenNone, config.TokenOptionalUser} {
		rt := &proxy.Route{Name: "r", Prefix: "/r/", TokenType: tt, Require: p}
		req := httptest.NewRequest("GET", "https://moat.example/r/x", nil)
		req.Header.Set("X-CSRF", "1")
		_, _, err := s.authorizeRoute(httptest.NewRecorder(), req, rt)
		var he *httperr.Error
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Errorf("token %s with rules and no user: %v, want 403", tt, err)
		}
		rt.Require = nil
		if _, _, err := s.authorizeRoute(httptest.NewRecorder(), req, rt); err != nil {
			t.Errorf("token %s without rules: %v", tt, err)
		}
	}
}

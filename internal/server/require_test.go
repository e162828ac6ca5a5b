package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/moat-bff/moat/internal/policy"
	"github.com/moat-bff/moat/internal/session"
)

// TestRequireLocalHandler: Require judges a local handler's user like a
// proxied route's, and h runs only when every rule holds.
func TestRequireLocalHandler(t *testing.T) {
	p, err := policy.New([]policy.Rule{{Claim: "roles", AnyOf: []string{"admin"}}, {ACR: []string{"mfa"}}}, "https://moat.example/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		claims string
		status int
		code   string
	}{
		{`{"roles":["admin"],"acr":"mfa"}`, http.StatusOK, ""},
		{`{"roles":["user"],"acr":"mfa"}`, http.StatusForbidden, "forbidden"},
		{`{"roles":["admin"]}`, http.StatusUnauthorized, "step_up_required"},
		{``, http.StatusForbidden, "forbidden"},
	} {
		ran := false
		h := Require(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true }))
		req := httptest.NewRequest("GET", "/api/x", nil)
		if tc.claims != "" {
			l := &session.Loaded{Session: session.Session{Subject: "alice", Claims: json.RawMessage(tc.claims)}}
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

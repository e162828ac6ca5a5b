package oidc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// Every OAuth error code of RFC 6749 §5.2 (and the ones providers add),
// with the statuses providers use, mapped to what it means for a session.
var tokenErrorCases = []struct {
	status int
	code   string
	want   oidc.TokenErrorKind
}{
	{400, "invalid_grant", oidc.GrantDead},
	{401, "invalid_grant", oidc.GrantDead},
	{400, "invalid_request", oidc.GrantDead},
	{400, "unsupported_grant_type", oidc.GrantDead},
	{400, "invalid_scope", oidc.GrantDead},
	{403, "access_denied", oidc.GrantDead},
	{400, "invalid_token", oidc.GrantDead},
	{404, "session_not_found", oidc.GrantDead},
	{400, "", oidc.GrantDead},
	{401, "", oidc.GrantDead},
	{200, "invalid_grant", oidc.GrantDead},
	{400, "invalid_client", oidc.ClientRejected},
	{401, "invalid_client", oidc.ClientRejected},
	{400, "unauthorized_client", oidc.ClientRejected},
	{403, "unauthorized_client", oidc.ClientRejected},
	{400, "invalid_target", oidc.TargetRefused}, // RFC 8707 §2, RFC 8693 §2.2.2: configuration, not the grant
	{401, "invalid_target", oidc.TargetRefused},
	{400, "use_dpop_nonce", oidc.Transient},     // RFC 9449 §8: asked again after the one retry; not the grant
	{400, "invalid_dpop_proof", oidc.Transient}, // RFC 9449 §5: moat's proof refused (clock, key): not the grant
	{401, "invalid_dpop_proof", oidc.Transient},
	{500, "", oidc.Transient},
	{500, "server_error", oidc.Transient},
	{502, "", oidc.Transient},
	{503, "temporarily_unavailable", oidc.Transient},
	{504, "", oidc.Transient},
	{400, "temporarily_unavailable", oidc.Transient},
	{400, "server_error", oidc.Transient},
	{400, "slow_down", oidc.Transient},
	{500, "invalid_grant", oidc.Transient},
	{408, "", oidc.Transient},
	{429, "", oidc.Transient},
	{429, "invalid_request", oidc.Transient},
	{403, "", oidc.Transient}, // a WAF or proxy, not the grant
	{404, "", oidc.Transient},
	{405, "", oidc.Transient},
}

func TestClassifyTokenError(t *testing.T) {
	for _, c := range tokenErrorCases {
		if got := oidc.ClassifyTokenError(c.status, c.code); got != c.want {
			t.Errorf("%d %q: %v, want %v", c.status, c.code, got, c.want)
		}
	}
}

// The same table end to end: the test OP answers a refresh with each status
// and code, and Refresh returns the matching error.
func TestRefreshErrorsFromTheProvider(t *testing.T) {
	p := oidctest.New(t, redirect)
	var rejected atomic.Int32
	c := newClient(t, p, func(c *oidc.Config) { c.OnClientRejected = func() { rejected.Add(1) } })
	ctx := context.Background()
	for _, tc := range tokenErrorCases {
		if tc.status == 200 {
			continue // the OP cannot answer 200 with an error; ClassifyTokenError covers it
		}
		p.Set(func(b *oidctest.Behavior) {
			b.RefreshErrorStatus, b.RefreshErrorCode, b.RefreshErrorBody = tc.status, tc.code, "<html>nope</html>"
		})
		before := rejected.Load()
		_, _, err := c.Refresh(ctx, "rt-any", "alice", nil)
		grant, client, unavail := errors.Is(err, oidc.ErrInvalidGrant), errors.Is(err, oidc.ErrClientRejected), errors.Is(err, oidc.ErrUnavailable)
		var ok bool
		switch tc.want {
		case oidc.GrantDead:
			ok = grant && !client && !unavail
		case oidc.ClientRejected:
			ok = client && unavail && !grant && rejected.Load() == before+1
		case oidc.Transient, oidc.TargetRefused:
			ok = unavail && !client && !grant
		}
		if !ok {
			t.Errorf("%d %q: err = %v, want %v", tc.status, tc.code, err, tc.want)
		}
	}
	p.Set(func(b *oidctest.Behavior) { b.RefreshErrorStatus = 0; b.RefreshError = "hang" })
	if _, _, err := c.Refresh(ctx, "rt-any", "alice", nil); !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("timeout: %v, want ErrUnavailable", err)
	}
	p.Close()
	if _, _, err := c.Refresh(ctx, "rt-any", "alice", nil); !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, oidc.ErrInvalidGrant) {
		t.Errorf("connection refused: %v, want ErrUnavailable", err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A refused client is logged at most once a minute however many calls
// fail, is reported by ClientRejected until the token endpoint accepts the
// client again, and never logs the secret.
func TestClientRejectionIsReportedAndLoggedOncePerMinute(t *testing.T) {
	p := oidctest.New(t, redirect)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var logs syncBuf
	c := oidc.New(oidc.Config{
		Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: "wrong-secret",
		AuthMethod: "client_secret_basic", Scopes: []string{"openid"}, RedirectURL: redirect,
		MaxIDTokenAge: 10 * time.Minute, ClockSkew: time.Minute, Now: clock,
		HTTPClient: &http.Client{Timeout: 2 * time.Second},
	}, slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx := context.Background()
	if _, ok := c.ClientRejected(); ok {
		t.Fatal("rejected before any call")
	}
	for range 5 {
		if _, _, err := c.Refresh(ctx, "rt-any", "alice", nil); !errors.Is(err, oidc.ErrClientRejected) {
			t.Fatalf("wrong secret: %v, want ErrClientRejected", err)
		}
	}
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 1 {
		t.Errorf("%d error lines for 5 rejections in a minute, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "invalid_client") || strings.Contains(logs.String(), "wrong-secret") {
		t.Errorf("log: %s", logs.String())
	}
	rej, ok := c.ClientRejected()
	if !ok || rej.Code != "invalid_client" {
		t.Errorf("ClientRejected = %+v, %v", rej, ok)
	}
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	c.Refresh(ctx, "rt-any", "alice", nil)
	c.Refresh(ctx, "rt-any", "alice", nil)
	if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 2 {
		t.Errorf("%d error lines after a minute, want 2", n)
	}

	// A client the token endpoint accepts clears the report.
	good := newClient(t, p, nil)
	tok, id, err := login(t, good, "n-1")
	if err != nil {
		t.Fatal(err)
	}
	p.Set(func(b *oidctest.Behavior) { b.RefreshErrorStatus, b.RefreshErrorCode = 401, "invalid_client" })
	good.Refresh(ctx, tok.RefreshToken, id.Subject, nil)
	if _, ok := good.ClientRejected(); !ok {
		t.Fatal("not reported")
	}
	p.Set(func(b *oidctest.Behavior) { b.RefreshErrorStatus = 0 })
	if _, _, err := good.Refresh(ctx, tok.RefreshToken, id.Subject, nil); err != nil {
		t.Fatal(err)
	}
	if rej, ok := good.ClientRejected(); ok {
		t.Errorf("still reported after a successful refresh: %+v", rej)
	}
}

package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
)

// Every proxied answer says X-Content-Type-Options: nosniff first; when
// moat's security headers have set it already, the upstream's empty or
// identical value is not repeated, and any other value still follows it.
func TestNosniff(t *testing.T) {
	cases := []struct {
		upstream []string // the upstream's X-Content-Type-Options
		preset   bool     // the response writer has nosniff already
		want     []string
	}{
		{nil, false, []string{"nosniff"}},
		{nil, true, []string{"nosniff"}},
		{[]string{""}, false, []string{"nosniff"}},
		{[]string{""}, true, []string{"nosniff"}},
		{[]string{"nosniff"}, false, []string{"nosniff"}},
		{[]string{"nosniff"}, true, []string{"nosniff"}},
		{[]string{"", "other"}, true, []string{"nosniff"}},
		{[]string{"other"}, false, []string{"other"}},
		{[]string{"other"}, true, []string{"nosniff", "other"}},
		{[]string{"nosniff", "nosniff"}, true, []string{"nosniff", "nosniff", "nosniff"}},
	}
	for _, c := range cases {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, v := range c.upstream {
				w.Header().Add("X-Content-Type-Options", v)
			}
			io.WriteString(w, "ok")
		}))
		u, _ := url.Parse(up.URL + "/")
		table := New([]Route{{Prefix: "/api/", Upstream: u}}, Options{Logger: slog.New(slog.DiscardHandler)})
		_, h, _ := table.Match("/api/x")
		w := httptest.NewRecorder()
		if c.preset {
			w.Header().Set("X-Content-Type-Options", "nosniff")
		}
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/x", nil))
		if got := w.Result().Header["X-Content-Type-Options"]; w.Code != http.StatusOK || !slices.Equal(got, c.want) {
			t.Errorf("upstream %q, preset %v: %d, %q; want %q", c.upstream, c.preset, w.Code, got, c.want)
		}
		table.CloseIdleConnections()
		up.Close()
	}
}

// stateCtx answers the state key with a State of its own, as internal/server's
// request context does.
type stateCtx struct {
	context.Context
	st State
}

func (c *stateCtx) Value(key any) any {
	if IsStateKey(key) {
		return &c.st
	}
	return c.Context.Value(key)
}

// A State held by the caller's context carries the token (SetToken) and is
// used by one forward only; without one, SetToken declines and WithToken
// serves.
func TestCallerHeldState(t *testing.T) {
	var got []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/")
	table := New([]Route{{Prefix: "/api/", Upstream: u, Token: true}}, Options{Logger: slog.New(slog.DiscardHandler)})
	defer table.CloseIdleConnections()
	_, h, _ := table.Match("/api/x")

	if SetToken(context.Background(), "t0", nil) {
		t.Fatal("SetToken found a State in a context without one")
	}
	ctx := &stateCtx{Context: context.Background()}
	if !SetToken(ctx, "t1", nil) {
		t.Fatal("SetToken did not find the caller's State")
	}
	r := httptest.NewRequest(http.MethodGet, "/api/x", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK || ctx.st.code != http.StatusOK {
		t.Fatalf("forward: %d, state saw %d", w.Code, ctx.st.code)
	}
	if SetToken(ctx, "t2", nil) {
		t.Error("SetToken reused a State a forward has claimed")
	}
	// A second forward with the same context gets a State of its own,
	// with the token.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	r = httptest.NewRequest(http.MethodGet, "/api/x", nil).WithContext(WithToken(context.Background(), "t3", nil))
	h.ServeHTTP(httptest.NewRecorder(), r)
	if want := []string{"Bearer t1", "Bearer t1", "Bearer t3"}; !slices.Equal(got, want) || w.Code != http.StatusOK {
		t.Errorf("upstream saw %q (second forward %d), want %q", got, w.Code, want)
	}
}

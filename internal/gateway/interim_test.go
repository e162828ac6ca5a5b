package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/session"
)

// An upstream's interim (1xx) answers never reach the browser: they would
// carry headers past moat's response filtering, and net/http's
// ReverseProxy clears the response's header map after relaying one, which
// wiped moat's own headers from the final answer. The final answer keeps
// every header moat sets: security headers, request ID, CORS for an allowed
// origin, and the smuggling guard's Connection: close.
func TestInterimResponsesAreDropped(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Interim", "continue")
		w.WriteHeader(http.StatusContinue)
		h.Set("Link", "</style.css>; rel=preload; as=style")
		h.Set("Set-Cookie", session.CookieName+"=planted; Path=/")
		h.Set("Access-Control-Allow-Origin", "https://evil.example")
		h.Set("Clear-Site-Data", `"cookies"`)
		w.WriteHeader(http.StatusEarlyHints)
		for k := range h {
			delete(h, k)
		}
		io.Copy(io.Discard, r.Body)
		h.Set("Content-Type", "application/json")
		io.WriteString(w, `{"final":true}`)
	}))
	defer up.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Prefix: "/early/", Upstream: up.URL + "/"})
	})
	b := e.browser()
	b.login("/")
	cookie := b.sessionCookie().Value

	for _, chunked := range []bool{false, true} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		framing := "Content-Length: 2\r\n\r\n{}"
		if chunked {
			framing = "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
		}
		fmt.Fprintf(conn, "POST /early/x HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:5173\r\nX-CSRF: 1\r\n"+
			"X-Request-Id: req-interim-1\r\nCookie: %s=%s\r\nContent-Type: application/json\r\n%s", session.CookieName, cookie, framing)
		br := bufio.NewReader(conn)
		tp := textproto.NewReader(br)
		status, err := tp.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Errorf("chunked=%v: first status line %q (headers %v): an interim answer reached the browser", chunked, status, hdr)
			continue
		}
		want := map[string]string{
			"X-Content-Type-Options":           "nosniff",
			"X-Request-Id":                     "req-interim-1",
			"Access-Control-Allow-Origin":      "http://localhost:5173",
			"Access-Control-Allow-Credentials": "true",
			"Content-Type":                     "application/json",
		}
		if chunked {
			want["Connection"] = "close"
		}
		for k, v := range want {
			if got := hdr.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("chunked=%v: %s = %q, want %q", chunked, k, got, v)
			}
		}
		for _, k := range []string{"Link", "Set-Cookie", "Clear-Site-Data", "X-Interim"} {
			if got := hdr.Values(k); len(got) > 0 {
				t.Errorf("chunked=%v: the browser saw the interim answer's %s: %q", chunked, k, got)
			}
		}
	}
	// The raw requests bypassed b's cookie jar; the session must still be
	// there server-side.
	if got := b.get("/auth/checksession").json(t); got["loggedIn"] != true {
		t.Errorf("the session did not survive the interim answers: %v", got)
	}
}

// Clear-Site-Data from an upstream reaches the browser only on a route with
// insecure_allow_clear_site_data, and the session survives where it does not.
func TestClearSiteDataFromUpstream(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Clear-Site-Data", `"cookies", "storage"`)
		io.WriteString(w, "{}")
	}))
	defer up.Close()
	e := newEnv(t, func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Prefix: "/csd/", Upstream: up.URL + "/"},
			config.Route{Prefix: "/csd-allowed/", Upstream: up.URL + "/", InsecureAllowClearSiteData: true})
	})
	b := e.browser()
	b.login("/")
	if r := b.api("GET", "/csd/x"); r.StatusCode != http.StatusOK || r.Header.Get("Clear-Site-Data") != "" {
		t.Errorf("default route: %s, Clear-Site-Data %q", r.Status, r.Header.Get("Clear-Site-Data"))
	}
	if r := b.api("GET", "/csd-allowed/x"); r.StatusCode != http.StatusOK || r.Header.Get("Clear-Site-Data") != `"cookies", "storage"` {
		t.Errorf("opted-in route: %s, Clear-Site-Data %q", r.Status, r.Header.Get("Clear-Site-Data"))
	}
	if !strings.Contains(e.logs.String(), "insecure_allow_clear_site_data is set") {
		t.Error("no startup warning names insecure_allow_clear_site_data")
	}
}

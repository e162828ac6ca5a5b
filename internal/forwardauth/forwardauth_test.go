package forwardauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/httperr"
)

var loopback = netip.MustParsePrefix("127.0.0.0/8")

func trustLoopback(ip netip.Addr) bool { return loopback.Contains(ip) }

// sub builds a subrequest as a gateway on 127.0.0.1 sends it.
func sub(method, target string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func TestRebuildConventions(t *testing.T) {
	for _, c := range []struct {
		name       string
		r          *http.Request
		method     string
		path, rawq string
		host       string
	}{
		{"nginx auth_request", sub("GET", CheckPath, "X-Original-Method", "POST", "X-Original-URI", "/api/items?x=1"),
			"POST", "/api/items", "x=1", "example.com"},
		{"ingress-nginx auth-url", sub("GET", CheckPath, "X-Original-Method", "DELETE", "X-Original-URL", "https://app.example/api/items/7?y=2"),
			"DELETE", "/api/items/7", "y=2", "example.com"},
		{"nginx and ingress-nginx together, agreeing", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URL", "https://app.example/api/a", "X-Original-URI", "/api/a"),
			"GET", "/api/a", "", "example.com"},
		{"traefik forwardAuth", sub("GET", CheckPath, "X-Forwarded-Method", "PUT", "X-Forwarded-Uri", "/api/a%20b", "X-Forwarded-Host", "app.example", "X-Forwarded-Proto", "https"),
			"PUT", "/api/a b", "", "app.example"},
		{"caddy forward_auth", sub("GET", CheckPath, "X-Forwarded-Method", "PATCH", "X-Forwarded-Uri", "/api/x?q", "X-Forwarded-Host", "app.example"),
			"PATCH", "/api/x", "q", "app.example"},
		{"envoy ext_authz", sub("POST", ExtAuthzPrefix+"/api/items?z=3"),
			"POST", "/api/items", "z=3", "example.com"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := Rebuild(c.r, trustLoopback)
			if err != nil {
				t.Fatal(err)
			}
			if o.Method != c.method || o.URL.Path != c.path || o.URL.RawQuery != c.rawq || o.Host != c.host {
				t.Errorf("got %s %s ? %s host %s", o.Method, o.URL.Path, o.URL.RawQuery, o.Host)
			}
			for k := range o.Header {
				if strings.HasPrefix(k, "X-Original") || strings.HasPrefix(k, "X-Forwarded") {
					t.Errorf("%s reached the authorization step", k)
				}
			}
		})
	}
}

func TestRebuildRefusesAmbiguityAndTricks(t *testing.T) {
	for _, c := range []struct {
		name   string
		r      *http.Request
		status int
	}{
		{"no method", sub("GET", CheckPath, "X-Original-URI", "/api/a"), 400},
		{"no target", sub("GET", CheckPath, "X-Original-Method", "GET"), 400},
		{"client forges X-Forwarded-Method beside nginx's X-Original-Method", sub("GET", CheckPath, "X-Original-Method", "DELETE", "X-Forwarded-Method", "GET", "X-Original-URI", "/api/a"), 400},
		{"client forges X-Original-URI beside Traefik's X-Forwarded-Uri", sub("GET", CheckPath, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/admin/a", "X-Original-URI", "/api/a"), 400},
		{"client forges X-Original-URL", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/admin/a", "X-Original-URL", "https://x/api/a"), 400},
		{"repeated method header", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-Method", "DELETE", "X-Original-URI", "/api/a"), 400},
		{"repeated target header", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/api/a", "X-Original-URI", "/admin/"), 400},
		{"envoy with a forged method header", sub("GET", ExtAuthzPrefix+"/api/a", "X-Forwarded-Method", "DELETE"), 400},
		{"envoy with a forged target header", sub("GET", ExtAuthzPrefix+"/api/a", "X-Original-URI", "/admin/a"), 400},
		{"dot segment", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/api/public/../secret"), 400},
		{"encoded dot segment", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/api/public/%2e%2e/secret"), 400},
		{"encoded slash", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/api/public%2f..%2fsecret"), 400},
		{"empty segment", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/api//secret"), 400},
		{"backslash", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "/api/public\\..\\secret"), 400},
		{"absolute target", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "http://evil/api/a"), 400},
		{"scheme-relative target", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URI", "//evil/api/a"), 400},
		{"lower-case method", sub("GET", CheckPath, "X-Original-Method", "get", "X-Original-URI", "/api/a"), 400},
		{"method with a space", sub("GET", CheckPath, "X-Original-Method", "GET /x", "X-Original-URI", "/api/a"), 400},
		{"X-Original-URL not absolute", sub("GET", CheckPath, "X-Original-Method", "GET", "X-Original-URL", "/api/a"), 400},
		{"elsewhere on the listener", sub("GET", "/api/a", "X-Original-Method", "GET", "X-Original-URI", "/api/a"), 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Rebuild(c.r, trustLoopback)
			var e *httperr.Error
			if !errors.As(err, &e) || e.Status != c.status {
				t.Fatalf("err = %v, want a %d", err, c.status)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	for _, c := range []struct {
		peer, xff, want string
	}{
		{"127.0.0.1:1", "", "127.0.0.1"},
		{"127.0.0.1:1", "203.0.113.7", "203.0.113.7"},
		{"127.0.0.1:1", "6.6.6.6, 203.0.113.7", "203.0.113.7"},   // the client wrote 6.6.6.6 itself
		{"127.0.0.1:1", "203.0.113.7, 127.0.0.2", "203.0.113.7"}, // two gateways
		{"127.0.0.1:1", "garbage, 203.0.113.7", "203.0.113.7"},   // garbage left of the real hop
		{"192.0.2.1:1", "6.6.6.6", "192.0.2.1"},                  // untrusted peer: its header means nothing
		{"[::ffff:127.0.0.1]:1", "203.0.113.9", "203.0.113.9"},   // mapped loopback
		{"127.0.0.1:1", "203.0.113.7, not-an-ip", "127.0.0.1"},   // a garbled last hop: nothing beyond it
		{"127.0.0.1:1", "203.0.113.7:5678", "203.0.113.7"},       // a load balancer that writes the port
		{"127.0.0.1:1", "[2001:db8::7]:443", "2001:db8::7"},      // as the main listener reads it
	} {
		r := sub("GET", CheckPath)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := ClientIP(r, trustLoopback).String(); got != c.want {
			t.Errorf("peer %s xff %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

// FuzzRebuild: whatever a gateway (or anyone it lets through) sends, a
// rebuilt request has a method token, an origin-form canonical path, and
// none of the conventions' headers.
func FuzzRebuild(f *testing.F) {
	f.Add("/_moat/forward-auth", "GET", "/api/a?x=1", "", "", "")
	f.Add("/_moat/forward-auth", "", "", "PUT", "/api/a", "")
	f.Add("/_moat/forward-auth", "GET", "", "", "", "https://h/api/%2e%2e/x")
	f.Add("/_moat/ext-authz/api/a", "", "", "", "", "")
	f.Add("/_moat/ext-authz/api/../b", "GET", "/api/b", "", "", "")
	f.Fuzz(func(t *testing.T, path, om, ouri, fm, furi, ourl string) {
		r := &http.Request{Method: "GET", RequestURI: path, Header: http.Header{}, RemoteAddr: "127.0.0.1:1", Host: "h"}
		u, err := url.ParseRequestURI(path) // as net/http parses the subrequest's target
		if err != nil {
			return
		}
		r.URL = u
		set := func(k, v string) {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		set("X-Original-Method", om)
		set("X-Original-Uri", ouri)
		set("X-Forwarded-Method", fm)
		set("X-Forwarded-Uri", furi)
		set("X-Original-Url", ourl)
		o, err := Rebuild(r, trustLoopback)
		if err != nil {
			var e *httperr.Error
			if !errors.As(err, &e) || (e.Status != 400 && e.Status != 404) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !validMethod(o.Method) {
			t.Fatalf("method %q", o.Method)
		}
		p := o.URL.Path
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || !canonical(p) || strings.Contains(p, "\\") {
			t.Fatalf("path %q", p)
		}
		for _, k := range dropHeaders {
			if _, ok := o.Header[k]; ok {
				t.Fatalf("%s kept", k)
			}
		}
		// The target is one the headers (or the Envoy path) stated.
		if o.URL.RequestURI() == "" {
			t.Fatal("empty target")
		}
	})
}

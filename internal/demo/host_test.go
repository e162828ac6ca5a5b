package demo_test

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/moat-bff/moat/internal/demo"
)

// The demo's host follows --frontend-origin (cookies are per host), --host
// can name it, and an origin the demo cannot share a site with is refused
// with a reason, never started silently (issue 18.1, 19.13).
func TestHostFollowsFrontendOrigin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        demo.Options
		wantHost string // "" = Start must fail
		wantErr  string
	}{
		{name: "default", wantHost: "127.0.0.1"},
		{name: "frontend on 127.0.0.1", o: demo.Options{FrontendOrigin: "http://127.0.0.1:5173"}, wantHost: "127.0.0.1"},
		{name: "frontend on localhost", o: demo.Options{FrontendOrigin: "http://localhost:5173"}, wantHost: "localhost"},
		{name: "frontend on LOCALHOST", o: demo.Options{FrontendOrigin: "http://LOCALHOST:5173"}, wantHost: "localhost"},
		{name: "--host localhost", o: demo.Options{Host: "localhost"}, wantHost: "localhost"},
		{name: "--host and frontend agree", o: demo.Options{Host: "localhost", FrontendOrigin: "http://localhost:5173"}, wantHost: "localhost"},
		{name: "--host and frontend differ", o: demo.Options{Host: "127.0.0.1", FrontendOrigin: "http://localhost:5173"}, wantErr: "name different hosts"},
		{name: "https frontend", o: demo.Options{FrontendOrigin: "https://localhost:5173"}, wantErr: "plain http"},
		{name: "frontend off loopback", o: demo.Options{FrontendOrigin: "http://myapp.test:5173"}, wantErr: "loopback only"},
		{name: "frontend on a LAN address", o: demo.Options{FrontendOrigin: "http://192.168.1.20:5173"}, wantErr: "loopback only"},
		{name: "--host off loopback", o: demo.Options{Host: "0.0.0.0"}, wantErr: "loopback only"},
		{name: "frontend with a path", o: demo.Options{FrontendOrigin: "http://localhost:5173/app"}, wantErr: "no path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantHost == "" {
				s, err := demo.Start(t.Context(), tc.o)
				if err == nil {
					s.Close()
					t.Fatalf("Start(%+v) succeeded; want an error about %q", tc.o, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not say %q", err, tc.wantErr)
				}
				return
			}
			s := startDemo(t, tc.o)
			for name, u := range map[string]string{"moat": s.BFFURL, "issuer": s.IssuerURL, "admin": s.AdminURL, "API": s.APIURL} {
				if !strings.HasPrefix(u, "http://"+tc.wantHost+":") {
					t.Errorf("%s URL %s: want host %s", name, u, tc.wantHost)
				}
			}
			if want := []string{s.BFFURL + "/auth/callback"}; strings.Join(s.RedirectURIs, " ") != want[0] {
				t.Errorf("redirect URIs %v, want %v", s.RedirectURIs, want)
			}
			status, _, body := getJSON(t, s.BFFURL+"/auth/checksession", nil)
			if status != http.StatusOK || body["loggedIn"] != false {
				t.Errorf("checksession at %s: %d %v", s.BFFURL, status, body)
			}
			_, _, doc := getJSON(t, s.IssuerURL+"/.well-known/openid-configuration", nil)
			if doc["issuer"] != s.IssuerURL {
				t.Errorf("discovery issuer %v, want %s", doc["issuer"], s.IssuerURL)
			}
		})
	}
}

// On localhost the demo also listens on [::1], where the system has it: a
// browser or Vite's proxy may resolve localhost to either address. And
// --host ::1 serves on the IPv6 loopback alone.
func TestLocalhostListensOnBothLoopbacks(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
	s := startDemo(t, demo.Options{Host: "localhost"})
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(s.BFFURL, "http://"))
	for _, host := range []string{"127.0.0.1", "::1"} {
		u := "http://" + net.JoinHostPort(host, p) + "/auth/checksession"
		if status, _, body := getJSON(t, u, nil); status != http.StatusOK || body["loggedIn"] != false {
			t.Errorf("%s: %d %v", u, status, body)
		}
	}

	// --host ::1: bracketed URLs, and the IdP's issuer matches them.
	s6 := startDemo(t, demo.Options{Host: "::1"})
	if !strings.HasPrefix(s6.BFFURL, "http://[::1]:") || !strings.HasPrefix(s6.IssuerURL, "http://[::1]:") {
		t.Fatalf("--host ::1: moat %s, issuer %s", s6.BFFURL, s6.IssuerURL)
	}
	if _, _, doc := getJSON(t, s6.IssuerURL+"/.well-known/openid-configuration", nil); doc["issuer"] != s6.IssuerURL {
		t.Errorf("--host ::1: discovery issuer %v, want %s", doc["issuer"], s6.IssuerURL)
	}
	if status, _, _ := getJSON(t, s6.BFFURL+"/auth/checksession", nil); status != http.StatusOK {
		t.Errorf("--host ::1: checksession %d", status)
	}
}

// Busy ports are reported all at once, each with its flag, without the
// "moat: moat:" doubling main's prefix would add to a label starting with
// "moat" (issue 19.14).
func TestBusyPortsAreReportedAtOnce(t *testing.T) {
	var ports []int
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	s, err := demo.Start(t.Context(), demo.Options{BFFPort: ports[0], AdminPort: ports[1]})
	if err == nil {
		s.Close()
		t.Fatal("the demo started on busy ports")
	}
	msg := err.Error()
	for _, want := range []string{"--bff-port " + strconv.Itoa(ports[0]), "--admin-port " + strconv.Itoa(ports[1]), "address already in use"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.HasPrefix(msg, "moat") || strings.Contains(msg, "--idp-port") || strings.Contains(msg, "--api-port") {
		t.Errorf("error names free ports or starts with moat:\n%s", msg)
	}
}

package demo

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// DefaultHost is the demo's host when neither Options.Host nor
// Options.FrontendOrigin names one.
const DefaultHost = "127.0.0.1"

// resolveHost settles o.Host: the host of every URL the demo publishes
// (moat's public URL, the issuer, the redirect URIs) and where it listens.
//
// Cookies are per host, and the session cookie is SameSite=Strict: an SPA on
// http://localhost:5173 sees moat's session only if moat is on localhost
// too (any port). So the host comes from --frontend-origin unless --host
// names it, and a frontend the demo cannot share a site with is an error,
// never a demo that silently cannot log in.
func (o *Options) resolveHost() error {
	var front string
	if o.FrontendOrigin != "" {
		u, err := url.Parse(o.FrontendOrigin)
		if err != nil || u.Host == "" || u.Scheme+"://"+u.Host != o.FrontendOrigin {
			return fmt.Errorf("--frontend-origin %q: give an origin like http://localhost:5173 (no path, no trailing slash)", o.FrontendOrigin)
		}
		if u.Scheme != "http" {
			return fmt.Errorf("--frontend-origin %q: the demo serves plain http, and an https page is another site than an http one, so the browser would keep moat's SameSite=Strict session cookie off the SPA's calls; serve your dev server over http on localhost or 127.0.0.1", o.FrontendOrigin)
		}
		// Browsers send Origin in lower case; CORS compares it exactly.
		o.FrontendOrigin = strings.ToLower(o.FrontendOrigin)
		front = strings.ToLower(u.Hostname())
		if !loopbackHost(front) {
			return fmt.Errorf("--frontend-origin %q: the demo runs on loopback only (plain http, where browsers keep a Secure cookie only on localhost and loopback addresses); serve your dev server on http://localhost:PORT or http://127.0.0.1:PORT", o.FrontendOrigin)
		}
	}
	switch {
	case o.Host == "" && front != "":
		o.Host = front
	case o.Host == "":
		o.Host = DefaultHost
	case !loopbackHost(o.Host):
		return fmt.Errorf("--host %q: the demo listens on loopback only; use 127.0.0.1, localhost or ::1", o.Host)
	case front != "" && !sameHost(o.Host, front):
		return fmt.Errorf("--host %q and --frontend-origin %q name different hosts: cookies are per host, so the SPA would never see moat's session; drop --host (the demo then takes the frontend's host) or give both the same host", o.Host, o.FrontendOrigin)
	}
	if ip := net.ParseIP(o.Host); ip != nil {
		o.Host = ip.String()
	} else {
		o.Host = strings.ToLower(o.Host)
	}
	return nil
}

// loopbackHost is localhost or a loopback IP: hosts a browser treats as a
// secure context over plain http, and that the demo can listen on.
func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func sameHost(a, b string) bool {
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

// hostURL is http://host:port, with brackets for an IPv6 host.
func hostURL(host string, port int) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// port is one of the demo's listeners, as named to the user.
type port struct {
	what, flag string
	port       int
}

// listenAll opens every port on host and reports every one that fails at
// once, so a clash costs one run, not four. localhost listens on 127.0.0.1
// and, where the system has IPv6, on [::1] at the same port: a browser or a
// Node dev-server proxy may resolve localhost to either. A port taken on
// [::1] is an error, since the browser might reach that other server.
func listenAll(host string, ports []port, log *slog.Logger) ([][]net.Listener, error) {
	ips := []string{host}
	v6 := false
	if host == "localhost" {
		ips, v6 = []string{"127.0.0.1"}, true
	}
	out := make([][]net.Listener, len(ports))
	var errs []string
	for i, p := range ports {
		var lns []net.Listener
		ln, err := net.Listen("tcp", net.JoinHostPort(ips[0], strconv.Itoa(p.port)))
		if err == nil {
			lns = append(lns, ln)
			if v6 {
				_, portStr, _ := net.SplitHostPort(ln.Addr().String())
				ln6, err6 := net.Listen("tcp", net.JoinHostPort("::1", portStr))
				switch {
				case err6 == nil:
					lns = append(lns, ln6)
				case errors.Is(err6, syscall.EADDRINUSE):
					err = err6
				default:
					log.Info("demo: not listening on [::1] (no IPv6 loopback?); browsers fall back to 127.0.0.1", "what", p.what, "error", err6)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("  %s (%s %d): %v", p.what, p.flag, p.port, err))
			for _, l := range lns {
				l.Close()
			}
			continue
		}
		out[i] = lns
	}
	if errs != nil {
		for _, lns := range out {
			for _, l := range lns {
				l.Close()
			}
		}
		return nil, fmt.Errorf("cannot listen on every demo port (is another moat demo running? choose free ports with the flags named):\n%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

package server

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/limit"
)

// limits holds the rate limiters and who is believed about client IPs.
type limits struct {
	trusted []netip.Prefix
	perIP   *limit.Keyed
	session *limit.Keyed
	login   *limit.Keyed
	maxBody int64
	v6bits  int // leading bits of an IPv6 client that form its key
}

func newLimits(cfg *config.Config, now func() time.Time) *limits {
	l := &limits{
		perIP:   limit.New(cfg.Limits.PerIP.Rate, cfg.Limits.PerIP.Burst, cfg.Limits.MaxKeys, now),
		session: limit.New(cfg.Limits.PerSession.Rate, cfg.Limits.PerSession.Burst, cfg.Limits.MaxKeys, now),
		login:   limit.New(cfg.Limits.Login.Rate, cfg.Limits.Login.Burst, cfg.Limits.MaxKeys, now),
		maxBody: cfg.Server.MaxBodyBytes,
		v6bits:  cfg.Limits.IPv6Prefix,
	}
	for _, p := range cfg.Server.TrustedProxies {
		pfx, _ := config.ParsePrefix(p) // validated
		l.trusted = append(l.trusted, pfx)
	}
	return l
}

func (l *limits) isTrusted(ip netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the peer address, or, when the peer is a trusted proxy, the
// right-most X-Forwarded-For entry that is not itself a trusted proxy.
// Entries a client wrote itself sit further left and are never reached.
// An entry may carry a port (some load balancers write "1.2.3.4:5678" or
// "[2001:db8::1]:443"); see ParseHop.
func (l *limits) clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := ap.Addr().Unmap()
	if !l.isTrusted(ip) {
		if ap.Addr().Is4() {
			// The peer's own text: net writes it canonically, and
			// ParseAddrPort accepted it, so it is what String would build.
			return r.RemoteAddr[:strings.LastIndexByte(r.RemoteAddr, ':')]
		}
		return ip.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := ParseHop(strings.TrimSpace(hops[i]))
		if !ok {
			break // a garbled chain: trust nothing beyond the last good hop
		}
		ip = hop
		if !l.isTrusted(ip) {
			break
		}
	}
	return ip.String()
}

// key is the rate-limit key of a client address as clientIP wrote it: an
// IPv4 address as is, an IPv6 address as its rate_limit.ipv6_prefix
// network (the 16 bytes of 2001:db8:1:2::/64), since one subscriber holds a whole /64
// and could otherwise spread requests over 2^64 buckets.
func (l *limits) key(ip string) string {
	if strings.IndexByte(ip, ':') < 0 || l.v6bits <= 0 || l.v6bits >= 128 {
		return ip // IPv4, or no address at all
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	p, err := a.WithZone("").Prefix(l.v6bits)
	if err != nil {
		return ip
	}
	// The network's 16 bytes: one allocation, and never equal to the
	// text of an IPv4 address (at most 15 bytes).
	b := p.Addr().As16()
	return string(b[:])
}

// ParseHop reads one X-Forwarded-For entry: an address, an address with a
// port ("192.0.2.1:80", "[2001:db8::1]:443") or a bracketed IPv6 address.
// The port and any IPv6 zone are dropped: neither names a client. A bare
// "2001:db8::1:443" is an IPv6 address, not one with a port; no guessing.
// Forward-auth reads its gateways' chains with it too, so that both
// listeners key the same client alike.
func ParseHop(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			s += ":0"
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone(""), true
}

func tooMany(wait time.Duration) *httperr.Error {
	e := httperr.New(http.StatusTooManyRequests, "rate_limited", "too many requests; retry later", nil)
	e.Header = http.Header{"Retry-After": {strconv.Itoa(int((wait + time.Second - 1) / time.Second))}}
	return e
}

// guard applies the per-IP limit to every request but health checks,
// bounds request bodies outside the routes (which bound their own), and
// closes HTTP/1.1 connections after chunked requests.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
			// RFC 9112 §6.1: a chunked request may have carried a
			// Content-Length too (net/http drops it silently), the shape of
			// request smuggling; closing the connection after the answer
			// discards whatever a front proxy may have framed differently.
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		if err := s.limitIP(r); err != nil {
			noteError(r, err)
			httperr.Write(w, err)
			return
		}
		if _, _, isRoute := s.routes.Match(r.URL.Path); !isRoute && !s.limits.bound(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bound applies server.max_body_bytes to r's body: a declared larger body
// is answered 413 at once (and bound reports false); a chunked one fails
// the handler's read at the bound.
func (l *limits) bound(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength > l.maxBody {
		httperr.Write(w, httperr.New(http.StatusRequestEntityTooLarge, "too_large", "the request body is too large", nil))
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, l.maxBody)
	return true
}

// boundBody bounds the bodies of a local handler (Handle, HandlePublic)
// that the mux chose below a route's prefix: guard leaves those to the
// route's own limit, which a local handler never applies.
func (s *Server) boundBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, isRoute := s.routes.Match(r.URL.Path); isRoute && !s.limits.bound(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults for what the URL leaves out.
const (
	// DefaultPrefix starts every key the store writes, so that moat can
	// share a database with other applications.
	DefaultPrefix = "moat:"
	// DefaultTimeout bounds dialling and every round trip. It is short so
	// that an outage turns into a quick 503 rather than hung requests.
	DefaultTimeout = time.Second

	defaultPort         = "6379"
	defaultSentinelPort = "26379"
	maxTimeout          = time.Minute
)

// mode is the deployment a URL names.
type mode int

const (
	modeStandalone mode = iota
	modeSentinel
	modeCluster
)

func (m mode) String() string {
	switch m {
	case modeSentinel:
		return "sentinel"
	case modeCluster:
		return "cluster"
	}
	return "standalone"
}

// config is a parsed store URL. Its String never shows a password.
type config struct {
	scheme   string
	mode     mode
	tls      bool
	addrs    []string // host:port of the server, the sentinels or the cluster seeds
	master   string   // sentinel master set name
	db       int
	username string
	password string

	sentinelUsername string
	sentinelPassword string

	prefix        string
	timeout       time.Duration // per round trip
	dialTimeout   time.Duration
	caFile        string
	tlsServerName string
}

// urlError is what parseURL returns. It names the problem, never the URL
// itself, which may hold a password.
func urlError(format string, args ...any) error {
	return fmt.Errorf("redis store url: "+format, args...)
}

// parseURL parses the forms documented on the package. It does its own
// splitting rather than url.Parse because of the host lists, and because
// url.Parse quotes the whole URL, password included, in its errors.
func parseURL(raw string) (config, error) {
	c := config{prefix: DefaultPrefix, timeout: DefaultTimeout}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return c, urlError("missing scheme: want redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://")
	}
	c.scheme = strings.ToLower(scheme)
	switch c.scheme {
	case "redis":
	case "rediss":
		c.tls = true
	case "redis+sentinel":
		c.mode = modeSentinel
	case "rediss+sentinel":
		c.mode, c.tls = modeSentinel, true
	case "redis+cluster":
		c.mode = modeCluster
	case "rediss+cluster":
		c.mode, c.tls = modeCluster, true
	default:
		return c, urlError("unknown scheme %q: want redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme)
	}
	if strings.Contains(rest, "#") {
		return c, urlError("fragments (#) are not allowed; percent-encode a # in the password as %%23")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")

	// Userinfo ends at the last @ of the authority.
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo := authority[:i]
		authority = authority[i+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if c.username, err = url.PathUnescape(user); err != nil {
			return c, urlError("bad percent-encoding in the user name")
		}
		if hasPass {
			if c.password, err = url.PathUnescape(pass); err != nil {
				return c, urlError("bad percent-encoding in the password")
			}
		}
		if c.username != "" && c.password == "" {
			return c, urlError("user %q has no password: write user:password@", c.username)
		}
	}

	port := defaultPort
	if c.mode == modeSentinel {
		port = defaultSentinelPort
	}
	if authority == "" {
		return c, urlError("no host")
	}
	for h := range strings.SplitSeq(authority, ",") {
		addr, err := hostPort(h, port)
		if err != nil {
			return c, err
		}
		c.addrs = append(c.addrs, addr)
	}
	if c.mode == modeStandalone && len(c.addrs) > 1 {
		return c, urlError("%s:// takes one host; use redis+sentinel:// or redis+cluster:// for several", c.scheme)
	}

	var segs []string
	if path != "" {
		segs = strings.Split(path, "/")
	}
	switch c.mode {
	case modeSentinel:
		if len(segs) == 0 || segs[0] == "" {
			return c, urlError("sentinel URL needs the master set name: %s://host:26379/mymaster[/db]", c.scheme)
		}
		name, err := url.PathUnescape(segs[0])
		if err != nil {
			return c, urlError("bad percent-encoding in the master set name")
		}
		c.master = name
		segs = segs[1:]
	case modeCluster:
		if len(segs) > 1 || (len(segs) == 1 && segs[0] != "" && segs[0] != "0") {
			return c, urlError("Redis Cluster has only database 0: %s://host1:6379,host2:6379 takes no path", c.scheme)
		}
		segs = nil
	}
	switch {
	case len(segs) == 0 || (len(segs) == 1 && segs[0] == ""):
	case len(segs) == 1:
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 || segs[0] != strconv.Itoa(db) {
			return c, urlError("database %q is not a number >= 0", segs[0])
		}
		c.db = db
	default:
		return c, urlError("path has too many parts: want /db (or /mastername/db for sentinel)")
	}

	if err := c.parseQuery(rawQuery); err != nil {
		return c, err
	}
	return c, nil
}

// hostPort validates one host[:port] and adds the default port.
func hostPort(h, defPort string) (string, error) {
	if h == "" {
		return "", urlError("empty host in the host list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a bare name, IPv4 address or bracketed IPv6 address.
		host, port = h, defPort
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			host = h[1 : len(h)-1]
		}
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
			return "", urlError("bad host %q: write host:port, [ipv6]:port or host", h)
		}
	}
	if host == "" {
		return "", urlError("empty host in %q", h)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("/\\@?#%", r) }) {
		return "", urlError("bad host %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", urlError("bad port %q in %q", port, h)
	}
	return net.JoinHostPort(host, port), nil
}

func (c *config) parseQuery(raw string) error {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return urlError("malformed query string")
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return urlError("parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "prefix":
			if v == "" {
				return urlError("prefix= is empty; leave it out for the default %q", DefaultPrefix)
			}
			c.prefix = v
		case "timeout", "dial_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > maxTimeout {
				return urlError("%s=%q: want a duration such as 500ms or 2s, above 0 and at most %v", k, v, maxTimeout)
			}
			if k == "timeout" {
				c.timeout = d
			} else {
				c.dialTimeout = d
			}
		case "ca_file", "tls_server_name":
			if !c.tls {
				return urlError("%s= needs TLS: use %s:// instead of %s://", k, strings.Replace(c.scheme, "redis", "rediss", 1), c.scheme)
			}
			if v == "" {
				return urlError("%s= is empty", k)
			}
			if k == "ca_file" {
				c.caFile = v
			} else {
				c.tlsServerName = v
			}
		case "sentinel_user", "sentinel_password":
			if c.mode != modeSentinel {
				return urlError("%s= only applies to redis+sentinel:// and rediss+sentinel://", k)
			}
			if k == "sentinel_user" {
				c.sentinelUsername = v
			} else {
				c.sentinelPassword = v
			}
		default:
			return urlError("unknown parameter %q (known: prefix, timeout, dial_timeout, ca_file, tls_server_name, sentinel_user, sentinel_password)", k)
		}
	}
	if c.sentinelUsername != "" && c.sentinelPassword == "" {
		return urlError("sentinel_user= needs sentinel_password=")
	}
	if c.dialTimeout == 0 {
		c.dialTimeout = c.timeout
	}
	return nil
}

// tlsConfig returns the TLS settings, or nil without TLS. Certificates are
// checked against the system roots, or only against ca_file when given.
func (c config) tlsConfig() (*tls.Config, error) {
	if !c.tls {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.tlsServerName}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("redis store url: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis store url: ca_file %s holds no PEM certificate", c.caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// String describes the target for logs: scheme, user, hosts, master and
// database, with any password replaced.
func (c config) String() string {
	var b strings.Builder
	b.WriteString(c.scheme)
	b.WriteString("://")
	if c.username != "" || c.password != "" {
		b.WriteString(url.PathEscape(c.username))
		if c.password != "" {
			b.WriteString(":REDACTED")
		}
		b.WriteString("@")
	}
	b.WriteString(strings.Join(c.addrs, ","))
	if c.master != "" {
		b.WriteString("/" + url.PathEscape(c.master))
	}
	if c.mode != modeCluster {
		b.WriteString("/" + strconv.Itoa(c.db))
	}
	return b.String()
}

// errNoURL is returned by Open for an empty URL, the likeliest mistake.
var errNoURL = errors.New("redis store url: empty")

// CheckURL reports what is wrong with a store URL without connecting, for
// configuration validation (moat check).
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

// Command moatbench is moat's load harness. It compares moat, built from
// this tree and run as its own process with each session store, with a
// tuned bare httputil.ReverseProxy that adds a fixed Bearer header, both in
// front of the same upstream returning 1 KiB of JSON, under wrk:
//
//	go run ./bench/cmd/moatbench                    # memory, redis, postgres
//	go run ./bench/cmd/moatbench -rounds 5 -duration 20s -conns 32,256
//	go run ./bench/cmd/moatbench -oauth2-proxy /path/to/oauth2-proxy
//	go run ./bench/cmd/moatbench -stores memory -nginx /usr/sbin/nginx
//
// Every measured server (upstream, bare proxy, moat per store, optionally
// oauth2-proxy) is a separate process, so its CPU time is read from
// /proc/<pid>/stat. An in-process fake OpenID Provider (oidctest) lets the
// harness log in once per target and send the session cookie with every
// request. Targets run round-robin for -rounds rounds, the order rotating
// each round; the table shows medians, and ratios to the bare proxy taken
// within each round. A store whose service does not answer is skipped.
//
// Run it from the module root; it needs wrk (Debian: apt-get install wrk).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/redis/rueidis"
)

type options struct {
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	conns       []int
	threads     int
	stores      []string
	redisURL    string
	postgresURL string
	oauth2Proxy string
	logLevel    string
	keep        bool
	baseline    string
	baseStore   string
	moatEnv     []string
	hold        bool
	nginx       string
	dpop        bool
}

func main() {
	var o options
	var conns, stores string
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every target once per connection count")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "wrk duration of each run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "wrk warm-up per target before the first round")
	flag.StringVar(&conns, "conns", "32,256", "comma-separated wrk connection counts")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.StringVar(&stores, "stores", "memory,redis,postgres", "moat session stores to run: memory, bolt, redis, postgres")
	flag.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/0", "Redis for the redis store (a random key prefix is used and deleted)")
	flag.StringVar(&o.postgresURL, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL for the postgres store (a random schema is used and dropped)")
	flag.StringVar(&o.oauth2Proxy, "oauth2-proxy", "", "path to an oauth2-proxy binary to include as a target (optional)")
	flag.StringVar(&o.logLevel, "moat-log-level", "info", "moat's log.level (info writes the access log line of every request, as in production)")
	flag.BoolVar(&o.dpop, "dpop", false, "also run, for each store, a moat with oidc.dpop: true (a DPoP proof signed per proxied request)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, configs, logs)")
	flag.StringVar(&o.baseline, "baseline-bin", "", "another moat binary (e.g. built from an earlier commit) to run too, for before/after figures from one run")
	flag.StringVar(&o.baseStore, "baseline-store", "memory", "the store of the -baseline-bin moat")
	flag.StringVar(&o.nginx, "nginx", "", "path to nginx (Debian: nginx-light): adds \"nginx alone\" and \"nginx + moat forward-auth\" (docs/gateways.md's config) in front of the same upstream")
	flag.BoolVar(&o.hold, "hold", false, "start and log in to every target, print a wrk command and the pid of each, and wait for an interrupt instead of measuring (for attaching perf or pprof by hand)")
	flag.Func("moat-env", "KEY=VALUE added to the environment of the moats built from this tree, not the -baseline-bin one (repeatable), e.g. GOGC=200", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want KEY=VALUE")
		}
		o.moatEnv = append(o.moatEnv, v)
		return nil
	})
	flag.Parse()
	for f := range strings.SplitSeq(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < o.threads {
			fatalf("-conns: %q is not a number of connections of at least -threads", f)
		}
		o.conns = append(o.conns, n)
	}
	for f := range strings.SplitSeq(stores, ",") {
		if f = strings.TrimSpace(f); f != "" {
			o.stores = append(o.stores, f)
		}
	}
	h := &harness{o: o}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := h.run(ctx)
	stop()
	h.cleanup()
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "moatbench: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "moatbench: "+format+"\n", args...)
}

// target is one server under load.
type target struct {
	name    string
	url     string // what wrk requests
	headers []string
	pid     int
	also    []int // more processes serving it (moat behind nginx)
	tree    bool  // count pid's children too (nginx's workers)
}

type harness struct {
	o        options
	dir      string
	procs    []*exec.Cmd
	ops      []*oidctest.Provider
	cleanups []func()
	targets  []*target
}

func (h *harness) run(ctx context.Context) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (Debian: apt-get install wrk)")
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run moatbench from the module root (go run ./bench/cmd/moatbench)")
	}
	var err error
	if h.dir, err = os.MkdirTemp("", "moatbench-"); err != nil {
		return err
	}
	logf("building moat, upstream and bareproxy into %s", h.dir)
	for _, b := range [][2]string{{"moat", "./cmd/moat"}, {"upstream", "./bench/cmd/upstream"}, {"bareproxy", "./bench/cmd/bareproxy"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(h.dir, b[0]), b[1])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", b[1], err)
		}
	}

	upAddr, _, err := h.startListening(filepath.Join(h.dir, "upstream"))
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	upstream := "http://" + upAddr
	bareAddr, bare, err := h.startListening(filepath.Join(h.dir, "bareproxy"),
		"-upstream", upstream, "-conns", strconv.Itoa(slices.Max(h.o.conns)))
	if err != nil {
		return fmt.Errorf("bareproxy: %w", err)
	}
	h.targets = append(h.targets, &target{name: "bare ReverseProxy", url: "http://" + bareAddr + "/api/item",
		pid: bare.Process.Pid, headers: []string{"X-CSRF: 1"}})

	moat := filepath.Join(h.dir, "moat")
	if h.o.baseline != "" {
		t, err := h.startMoat(ctx, h.o.baseline, h.o.baseStore, upstream, false)
		if err != nil {
			return fmt.Errorf("baseline moat: %w", err)
		}
		t.name = "moat " + h.o.baseStore + " (baseline)"
		h.targets = append(h.targets, t)
	}
	dpopModes := []bool{false}
	if h.o.dpop {
		dpopModes = append(dpopModes, true)
	}
	for _, store := range h.o.stores {
		for _, dpop := range dpopModes {
			t, err := h.startMoat(ctx, moat, store, upstream, dpop)
			if errors.Is(err, errSkipped) {
				continue
			}
			if err != nil {
				return fmt.Errorf("moat with the %s store: %w", store, err)
			}
			h.targets = append(h.targets, t)
		}
	}
	if h.o.nginx != "" {
		t, err := h.startNginxAlone(ctx, upstream)
		if err != nil {
			return fmt.Errorf("nginx alone: %w", err)
		}
		h.targets = append(h.targets, t)
		if t, err = h.startNginxForwardAuth(ctx, moat, upstream); err != nil {
			return fmt.Errorf("nginx + moat forward-auth: %w", err)
		}
		h.targets = append(h.targets, t)
	}
	if h.o.oauth2Proxy != "" {
		t, err := h.startOAuth2Proxy(ctx, upstream)
		if err != nil {
			return fmt.Errorf("oauth2-proxy: %w", err)
		}
		h.targets = append(h.targets, t)
	}

	if h.o.hold {
		for _, t := range h.targets {
			args := []string{"wrk", "--latency", "-t" + strconv.Itoa(h.o.threads), "-c" + strconv.Itoa(h.o.conns[0]), "-d" + h.o.duration.String()}
			for _, hd := range t.headers {
				args = append(args, "-H", "'"+hd+"'")
			}
			fmt.Printf("%s (pid %d):\n  %s %s\n", t.name, t.pid, strings.Join(args, " "), t.url)
		}
		logf("holding; interrupt to stop")
		<-ctx.Done()
		return nil
	}
	for _, t := range h.targets {
		if _, err := h.wrk(ctx, t, h.o.conns[0], h.o.warmup); err != nil {
			return fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	results := map[int]map[string][]result{} // conns → target → per round
	for _, c := range h.o.conns {
		results[c] = map[string][]result{}
		for round := range h.o.rounds {
			n := len(h.targets)
			for i := range n {
				t := h.targets[(i+round)%n] // rotate so that no target always runs first
				r, err := h.wrk(ctx, t, c, h.o.duration)
				if err != nil {
					return fmt.Errorf("%s at %d connections: %w", t.name, c, err)
				}
				logf("c=%d round %d %-22s %8.0f req/s  p50 %-8s p99 %-8s %6.1f µs CPU/req", c, round+1, t.name,
					r.rps, fmtDur(r.p50), fmtDur(r.p99), r.cpuPerReq)
				results[c][t.name] = append(results[c][t.name], r)
			}
		}
	}
	h.report(results)
	return nil
}

// startListening runs bin with args and waits for its "listening ADDR" line.
func (h *harness) startListening(bin string, args ...string) (string, *exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	h.procs = append(h.procs, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return "", nil, fmt.Errorf("no listening line: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		return "", nil, fmt.Errorf("unexpected first line %q", line)
	}
	go io.Copy(io.Discard, out)
	return addr, cmd, nil
}

var errSkipped = errors.New("skipped")

// reachable dials the host of a store URL.
func reachable(raw, defaultPort string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// withParam adds key=value to a URL's query.
func withParam(raw, key, value string) string {
	sep := "?"
	if strings.Contains(raw, "?") {
		sep = "&"
	}
	return raw + sep + key + "=" + url.QueryEscape(value)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startMoat runs the moat binary with store (and oidc.dpop), logs in and
// returns the target.
func (h *harness) startMoat(ctx context.Context, bin, store, upstream string, dpop bool) (*target, error) {
	spec := "memory"
	switch store {
	case "memory":
	case "bolt":
		spec = "bolt://" + filepath.Join(h.dir, "sessions-"+randomHex(4)+".db") // removed with the directory
	case "redis":
		if err := reachable(h.o.redisURL, "6379"); err != nil {
			logf("skipping the redis store: %v", err)
			return nil, errSkipped
		}
		prefix := "moatbench-" + randomHex(6) + ":"
		spec = withParam(h.o.redisURL, "prefix", prefix)
		h.cleanups = append(h.cleanups, func() { dropRedisPrefix(h.o.redisURL, prefix) })
	case "postgres":
		if err := reachable(h.o.postgresURL, "5432"); err != nil {
			logf("skipping the postgres store: %v", err)
			return nil, errSkipped
		}
		schema := "moatbench_" + randomHex(6)
		spec = withParam(h.o.postgresURL, "schema", schema)
		h.cleanups = append(h.cleanups, func() { dropSchema(h.o.postgresURL, schema) })
	default:
		return nil, fmt.Errorf("unknown store %q (memory, bolt, redis or postgres)", store)
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	op := h.startOP(base + "/auth/callback")
	name := "moat-" + store + "-" + strings.TrimPrefix(addr, "127.0.0.1:")
	env := h.o.moatEnv
	if bin == h.o.baseline {
		env = nil
	}
	cfg := moatYAML(addr, base, op, spec, upstream, "", h.o.logLevel)
	if dpop {
		op.Set(func(b *oidctest.Behavior) { b.DPoP = true }) // binds the tokens moat asks for with a proof
		cfg = strings.Replace(cfg, "  timeout: 5s\n", "  timeout: 5s\n  dpop: true\n", 1)
		name += "-dpop"
	}
	cmd, logPath, err := h.startMoatProcess(ctx, bin, name, addr, cfg, op, env)
	if err != nil {
		return nil, err
	}
	jar, err := login(base + "/auth/login?returnTo=/")
	if err != nil {
		return nil, err
	}
	cookie := jar.header(addr)
	if !strings.Contains(cookie, session.CookieName+"=") {
		return nil, fmt.Errorf("login set no session cookie (log: %s)", logPath)
	}
	logf("moat with the %s store on %s, logged in", store, addr)
	label := "moat " + store
	if dpop {
		label += " + dpop"
	}
	return &target{name: label, url: base + "/api/item", pid: cmd.Process.Pid,
		headers: []string{"Cookie: " + cookie, "X-CSRF: 1"}}, nil
}

// moatYAML is the configuration of a benchmarked moat: one client IP and
// one session, so the rate limits are lifted; extra is more YAML.
func moatYAML(listen, base string, op *oidctest.Provider, store, upstream, extra, logLevel string) string {
	return fmt.Sprintf(`listen: %q
public_url: %q
oidc:
  issuer: %q
  client_id: %q
  timeout: 5s
session:
  store: %q
routes:
  - prefix: "/api/"
    upstream: %q
rate_limit:
  per_ip: {rate: 1000000000, burst: 1000000000}
  per_session: {rate: 1000000000, burst: 1000000000}
  login: {rate: 1000000000, burst: 1000000000}
log:
  level: %q
  format: json
`, listen, base, op.Issuer, op.ClientID, store, upstream+"/", logLevel) + extra
}

// startMoatProcess writes cfg, runs `bin serve` with op's client secret,
// a fresh session key and env, its output in a log file, and waits until
// /readyz on listen (cfg's listen address) answers.
func (h *harness) startMoatProcess(ctx context.Context, bin, name, listen, cfg string, op *oidctest.Provider, env []string) (*exec.Cmd, string, error) {
	cfgPath := filepath.Join(h.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(h.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "MOAT_OIDC_CLIENT_SECRET="+op.ClientSecret, "MOAT_SESSION_KEYS="+session.NewKey())
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, "", err
	}
	logFile.Close()
	h.procs = append(h.procs, cmd)
	if err := waitReady(ctx, "http://"+listen+"/readyz"); err != nil {
		return nil, "", fmt.Errorf("%w (log: %s)", err, logPath)
	}
	return cmd, logPath, nil
}

// startOP starts an in-process OpenID Provider whose access tokens outlive
// the run, so no refresh happens under load.
func (h *harness) startOP(redirectURI string) *oidctest.Provider {
	op := oidctest.Start(redirectURI)
	op.Set(func(b *oidctest.Behavior) { b.AccessTokenTTL = 24 * time.Hour })
	h.ops = append(h.ops, op)
	return op
}

// startOAuth2Proxy runs oauth2-proxy in front of the same upstream, with the
// same kind of fake OP, passing the access token to the upstream
// (X-Forwarded-Access-Token). Run against v7.15.6; see docs/performance.md.
func (h *harness) startOAuth2Proxy(ctx context.Context, upstream string) (*target, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	op := h.startOP(base + "/oauth2/callback")
	secret := make([]byte, 32)
	rand.Read(secret)
	logPath := filepath.Join(h.dir, "oauth2-proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(h.o.oauth2Proxy,
		"--http-address="+addr,
		"--provider=oidc",
		"--oidc-issuer-url="+op.Issuer,
		"--client-id="+op.ClientID,
		"--client-secret="+op.ClientSecret,
		"--redirect-url="+base+"/oauth2/callback",
		"--upstream="+upstream+"/",
		"--cookie-secret="+base64.RawURLEncoding.EncodeToString(secret),
		"--cookie-secure=false",
		"--email-domain=*",
		"--code-challenge-method=S256",
		"--pass-access-token=true",
		"--skip-provider-button=true",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	logFile.Close()
	h.procs = append(h.procs, cmd)
	if err := waitReady(ctx, base+"/ping"); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	jar, err := login(base + "/oauth2/start?rd=%2F")
	if err != nil {
		return nil, err
	}
	logf("oauth2-proxy on %s, logged in", addr)
	return &target{name: "oauth2-proxy", url: base + "/api/item", pid: cmd.Process.Pid,
		headers: []string{"Cookie: " + jar.header(addr), "X-CSRF: 1"}}, nil
}

func waitReady(ctx context.Context, u string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s (last: %v)", u, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cookieJar keeps cookies per host:port, Secure ones included (browsers
// treat loopback http as secure), and none of a browser's other rules.
type cookieJar map[string]map[string]string

func (j cookieJar) header(host string) string {
	var parts []string
	for name, value := range j[host] {
		parts = append(parts, name+"="+value)
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// login follows a browser's redirects from start, through the OP (which
// approves at once), back to the target, keeping cookies.
func login(start string) (cookieJar, error) {
	jar := cookieJar{}
	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := start
	for range 10 {
		req, err := http.NewRequest(http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		if c := jar.header(req.URL.Host); c != "" {
			req.Header.Set("Cookie", c)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if jar[req.URL.Host] == nil {
				jar[req.URL.Host] = map[string]string{}
			}
			if c.MaxAge < 0 {
				delete(jar[req.URL.Host], c.Name)
			} else {
				jar[req.URL.Host][c.Name] = c.Value
			}
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return jar, nil
		}
		u, err := req.URL.Parse(loc)
		if err != nil {
			return nil, err
		}
		if u.Path == "/" && len(jar[u.Host]) > 0 && u.Host == mustHost(start) {
			return jar, nil // back at the landing page: logged in
		}
		next = u.String()
	}
	return nil, errors.New("login: too many redirects")
}

func mustHost(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

// result is one wrk run.
type result struct {
	rps       float64
	p50, p99  time.Duration
	requests  int64
	errors    int64
	cpu       time.Duration // the target process's user+system time during the run
	cpuPerReq float64       // µs
}

var (
	reRequests = regexp.MustCompile(`(\d+) requests in`)
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP50      = regexp.MustCompile(`\s50%\s+([0-9.]+)(us|ms|s)\b`)
	reP99      = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)\b`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func (h *harness) wrk(ctx context.Context, t *target, conns int, d time.Duration) (result, error) {
	args := []string{"--latency", "-t" + strconv.Itoa(h.o.threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s"}
	for _, hd := range t.headers {
		args = append(args, "-H", hd)
	}
	args = append(args, t.url)
	before, err := targetCPU(t)
	if err != nil {
		return result{}, err
	}
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	after, err := targetCPU(t)
	if err != nil {
		return result{}, err
	}
	return parseWrk(string(out), after-before)
}

func parseWrk(out string, cpu time.Duration) (result, error) {
	r := result{cpu: cpu}
	m := reRequests.FindStringSubmatch(out)
	m2 := reRPS.FindStringSubmatch(out)
	m3 := reP50.FindStringSubmatch(out)
	m4 := reP99.FindStringSubmatch(out)
	if m == nil || m2 == nil || m3 == nil || m4 == nil {
		return r, fmt.Errorf("cannot parse wrk's output:\n%s", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.rps, _ = strconv.ParseFloat(m2[1], 64)
	r.p50, r.p99 = parseLatency(m3[1], m3[2]), parseLatency(m4[1], m4[2])
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	if m := reSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	if r.errors > 0 {
		return r, fmt.Errorf("%d failed requests (non-2xx or socket errors):\n%s", r.errors, out)
	}
	if r.requests > 0 {
		r.cpuPerReq = float64(cpu.Microseconds()) / float64(r.requests)
	}
	return r, nil
}

func parseLatency(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	}
	return time.Duration(f * float64(time.Second))
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime returns pid's user plus system CPU time (threads included).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// report prints a Markdown table per connection count: medians over the
// rounds, and the median of each round's ratio to the bare proxy.
func (h *harness) report(results map[int]map[string][]result) {
	bare := h.targets[0].name
	fmt.Printf("\nmoatbench: %d rounds of %s per target and connection count, wrk -t%d; medians; ×bare is the median of each round's ratio to %s.\n",
		h.o.rounds, h.o.duration, h.o.threads, bare)
	for _, c := range h.o.conns {
		fmt.Printf("\n%d connections\n\n", c)
		fmt.Println("| target | req/s | ×bare | p50 | p99 | p99 ×bare | CPU µs/req | CPU ×bare |")
		fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		base := results[c][bare]
		for _, t := range h.targets {
			rs := results[c][t.name]
			var rps, p50, p99, cpu, rpsR, p99R, cpuR []float64
			for i, r := range rs {
				rps = append(rps, r.rps)
				p50 = append(p50, float64(r.p50))
				p99 = append(p99, float64(r.p99))
				cpu = append(cpu, r.cpuPerReq)
				b := base[i]
				rpsR = append(rpsR, r.rps/b.rps)
				p99R = append(p99R, float64(r.p99)/float64(b.p99))
				if b.cpuPerReq > 0 {
					cpuR = append(cpuR, r.cpuPerReq/b.cpuPerReq)
				}
			}
			fmt.Printf("| %s | %.0f | %.2f | %s | %s | %.2f | %.1f | %.2f |\n", t.name, median(rps), median(rpsR),
				fmtDur(time.Duration(median(p50))), fmtDur(time.Duration(median(p99))), median(p99R), median(cpu), median(cpuR))
		}
	}
}

// cleanup stops every process the harness started and removes what it
// created in the stores and on disk.
func (h *harness) cleanup() {
	for _, cmd := range h.procs {
		if cmd.Process != nil {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, cmd := range h.procs {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	for _, op := range h.ops {
		op.Close()
	}
	for _, f := range h.cleanups {
		f()
	}
	if h.dir != "" {
		if h.o.keep {
			logf("kept %s", h.dir)
		} else {
			os.RemoveAll(h.dir)
		}
	}
}

func dropSchema(pgURL, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		logf("dropping schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		logf("dropping schema %s: %v", schema, err)
	}
}

func dropRedisPrefix(redisURL, prefix string) {
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		logf("cleaning Redis prefix %s: %v", prefix, err)
		return
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		logf("cleaning Redis prefix %s: %v", prefix, err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			logf("cleaning Redis prefix %s: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

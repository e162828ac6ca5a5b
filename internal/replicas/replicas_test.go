// Package replicas_test runs several real moat processes against one shared
// session store, the way a deployment behind a load balancer does, and
// checks that a session is one session whichever replica serves it.
package replicas_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/session/storetest"
)

var moatBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-replicas")
	if err != nil {
		panic(err)
	}
	moatBinary = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-race", "-o", moatBinary, "github.com/moat-bff/moat/cmd/moat")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building moat:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stores returns the shared stores to test against: each runs when its
// MOAT_TEST_* variable is set.
func stores(t *testing.T) map[string]string {
	out := storetest.SharedURLs(t, "replicas")
	if len(out) == 0 {
		t.Skip("set MOAT_TEST_POSTGRES_URL and/or MOAT_TEST_REDIS_URL to run the multi-replica tests")
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type replica struct {
	addr  string
	admin string // the admin listener
	cmd   *exec.Cmd
	logs  *strings.Builder
	mu    *sync.Mutex
}

type cluster struct {
	t        *testing.T
	op       *oidctest.Provider
	api      *httptest.Server
	replicas []*replica
	key      string
	store    string
	public   string
	cacheTTL string       // session.cache_ttl; 200ms when empty
	hits     atomic.Int64 // requests that reached the upstream
}

// adminToken is every replica's admin API token.
const adminToken = "replicas-test-admin-token-0123456789abcdef"

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newCluster(t *testing.T, store string, n int, ttl ...string) *cluster {
	c := &cluster{t: t, key: session.NewKey(), store: store}
	if len(ttl) > 0 {
		c.cacheTTL = ttl[0]
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = freeAddr(t)
	}
	c.public = "http://" + addrs[0] // all replicas sit behind one public origin
	c.op = oidctest.New(t, c.public+"/auth/callback")
	c.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		at, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, ok := c.op.ValidAccessToken(at); !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(c.api.Close)
	for _, a := range addrs {
		c.start(a)
	}
	return c
}

func (c *cluster) start(addr string) {
	t := c.t
	ttl := c.cacheTTL
	if ttl == "" {
		ttl = "200ms"
	}
	admin := freeAddr(t)
	cfg := fmt.Sprintf(`
listen: %q
admin: {listen: %q, token: %q}
public_url: %q
oidc: {issuer: %q, client_id: %q, timeout: 3s}
session: {store: %q, cache_ttl: %s}
routes: [{prefix: "/api/", upstream: %q}]
rate_limit: {per_ip: {rate: 10000, burst: 10000}, per_session: {rate: 10000, burst: 10000}, login: {rate: 10000, burst: 10000}}
log: {level: debug}
`, addr, admin, adminToken, c.public, c.op.Issuer, c.op.ClientID, c.store, ttl, c.api.URL+"/")
	path := filepath.Join(t.TempDir(), "moat.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	r := &replica{addr: addr, admin: admin, logs: &strings.Builder{}, mu: &sync.Mutex{}}
	r.cmd = exec.Command(moatBinary, "serve", "--config", path)
	r.cmd.Env = append(os.Environ(), "MOAT_OIDC_CLIENT_SECRET="+c.op.ClientSecret, "MOAT_SESSION_KEYS="+c.key)
	r.cmd.Stderr = lockedWriter{r}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		if t.Failed() {
			t.Logf("replica %s log:\n%s", r.addr, r.log())
		}
		for _, tok := range append(c.op.IssuedTokens(), c.op.ClientSecret) {
			if strings.Contains(r.log(), tok) {
				t.Errorf("replica %s logged a token or the client secret", r.addr)
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready: %v\n%s", addr, err, r.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.replicas = append(c.replicas, r)
}

type lockedWriter struct{ r *replica }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.logs.Write(p)
}

func (r *replica) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// client is a browser whose cookies go to every replica, as they would
// behind one load-balanced origin.
type client struct {
	t      *testing.T
	mu     sync.Mutex
	cookie map[string]string
}

var noFollow = &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (cl *client) do(method, u string, hdr ...string) *http.Response {
	cl.t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	cl.mu.Lock()
	for k, v := range cl.cookie {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	cl.mu.Unlock()
	resp, err := noFollow.Do(req)
	if err != nil {
		cl.t.Fatalf("%s %s: %v", method, u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(cl.cookie, c.Name)
		} else {
			cl.cookie[c.Name] = c.Value
		}
	}
	return resp
}

func (c *cluster) url(i int, path string) string { return "http://" + c.replicas[i].addr + path }

// expireAccessToken reaches into the shared store, as if the access
// token's lifetime had passed.
func (c *cluster) expireAccessToken(cookie string) {
	t := c.t
	ctx := context.Background()
	store, err := backend.Open(ctx, c.store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	k, _ := session.ParseKey(c.key)
	codec, _ := session.NewCodec(k)
	m := session.NewManager(session.ManagerOptions{Store: store, Codec: codec, IdleTimeout: time.Hour, AbsoluteTimeout: 12 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	id, _ := session.ParseID(cookie)
	l, err := m.LoadKey(ctx, id.Key())
	if err != nil {
		t.Fatal(err)
	}
	l.Tokens.Expiry = time.Now().Add(-time.Second)
	if err := m.Save(ctx, l); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past the replicas' session cache TTL
}

// eventually polls cond for up to the documented revocation bound (1 s).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("not within 1 s: %s", what)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplicasShareOneSession(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, store, 3)
			cl := &client{t: t, cookie: map[string]string{}}

			// Login starts on replica 0 and finishes on replica 1.
			r := cl.do("GET", c.url(0, "/auth/login"))
			r = cl.do("GET", r.Header.Get("Location"))
			cb, _ := url.Parse(r.Header.Get("Location"))
			if r := cl.do("GET", c.url(1, cb.RequestURI())); r.StatusCode != http.StatusFound {
				t.Fatalf("callback on another replica: %s", r.Status)
			}
			api := func(i int) int { return cl.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode }
			for i := range c.replicas {
				if s := api(i); s != http.StatusOK {
					t.Fatalf("replica %d: %d", i, s)
				}
			}

			// After expiry, 30 concurrent calls over three replicas: one refresh.
			c.expireAccessToken(cl.cookie[session.CookieName])
			var wg sync.WaitGroup
			codes := make([]int, 30)
			for i := range codes {
				wg.Go(func() { codes[i] = api(i % 3) })
			}
			wg.Wait()
			for i, s := range codes {
				if s != http.StatusOK {
					t.Errorf("call %d on replica %d: %d", i, i%3, s)
				}
			}
			if n := c.op.Grants("refresh_token"); n != 1 {
				t.Errorf("the OP saw %d refresh grants, want exactly 1", n)
			}

			// Replica 0 dies; the session lives on.
			c.replicas[0].cmd.Process.Kill()
			c.replicas[0].cmd.Wait()
			if api(1) != http.StatusOK || api(2) != http.StatusOK {
				t.Fatal("the session died with a replica")
			}

			// Logout on replica 2 ends it everywhere.
			old := cl.cookieValue()
			if r := cl.do("POST", c.url(2, "/auth/logout"), "X-CSRF", "1"); r.StatusCode != http.StatusOK {
				t.Fatalf("logout: %s", r.Status)
			}
			replay := &client{t: t, cookie: map[string]string{session.CookieName: old}}
			for i := 1; i < 3; i++ {
				eventually(t, fmt.Sprintf("the logout is seen on replica %d", i), func() bool {
					return replay.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode == http.StatusUnauthorized
				})
			}
		})
	}
}

func (c *cluster) login(i int) *client {
	cl := &client{t: c.t, cookie: map[string]string{}}
	r := cl.do("GET", c.url(i, "/auth/login"))
	r = cl.do("GET", r.Header.Get("Location"))
	cb, _ := url.Parse(r.Header.Get("Location"))
	if r := cl.do("GET", c.url(i, cb.RequestURI())); r.StatusCode != http.StatusFound {
		c.t.Fatalf("login on replica %d: %s", i, r.Status)
	}
	return cl
}

func TestBackchannelLogoutReachesEveryReplica(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, store, 3)
			a, b := c.login(1), c.login(2)
			token := c.op.LogoutToken("alice", "", nil)
			resp, err := http.PostForm(c.url(0, "/auth/backchannel-logout"), url.Values{"logout_token": {token}})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("back-channel logout on replica 0: %v %v", err, resp.Status)
			}
			for i := range 3 {
				for _, cl := range []*client{a, b} {
					eventually(t, fmt.Sprintf("replica %d drops the sessions ended by back-channel logout", i), func() bool {
						return cl.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode == http.StatusUnauthorized
					})
				}
			}
			// The same token replayed to another replica is refused.
			resp, err = http.PostForm(c.url(2, "/auth/backchannel-logout"), url.Values{"logout_token": {token}})
			if err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("replayed logout token on replica 2: %v %v", err, resp.Status)
			}
		})
	}
}

func (cl *client) cookieValue() string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.cookie[session.CookieName]
}

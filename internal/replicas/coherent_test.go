package replicas_test

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// TestEndingIsSeenAtOnceOnEveryReplica is issue 14's acceptance test: three
// real moat processes on a real store, each caching sessions for the
// longest cache_ttl allowed (1 s). A logout, a back-channel logout, an
// admin revoke-one or an admin revoke-all on one replica: the very next
// request with the old cookie on every other replica gets 401 and the
// upstream sees nothing, with no pause between the ending request's answer
// and the replay.
func TestEndingIsSeenAtOnceOnEveryReplica(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) { endingIsSeenAtOnce(t, store) })
	}
}

// TestEndingIsSeenAtOnceOnEveryReplicaCluster is the same on a three-primary
// Redis Cluster that the test starts.
func TestEndingIsSeenAtOnceOnEveryReplicaCluster(t *testing.T) {
	endingIsSeenAtOnce(t, withParam(startRedisCluster(t), "prefix", "moat-test-"+randomHex(6)+":"))
}

func endingIsSeenAtOnce(t *testing.T, store string) {
	ends := []struct {
		name string
		end  func(c *cluster, i int, cl *client, cookie string) int
	}{
		{"logout", func(c *cluster, i int, cl *client, _ string) int {
			return cl.do("POST", c.url(i, "/auth/logout"), "X-CSRF", "1").StatusCode
		}},
		{"back-channel logout", func(c *cluster, i int, _ *client, _ string) int {
			resp, err := http.PostForm(c.url(i, "/auth/backchannel-logout"), url.Values{"logout_token": {c.op.LogoutToken("alice", "", nil)}})
			if err != nil {
				c.t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}},
		{"admin revoke-one", func(c *cluster, i int, _ *client, cookie string) int {
			id, err := session.ParseID(cookie)
			if err != nil {
				c.t.Fatal(err)
			}
			return c.admin(i, "DELETE", "/admin/sessions/"+string(id.Key()))
		}},
		{"admin revoke-all", func(c *cluster, i int, _ *client, _ string) int {
			return c.admin(i, "DELETE", "/admin/sessions?sub=alice")
		}},
	}
	c := newCluster(t, store, 3, "1s")
	for _, e := range ends {
		for by := range c.replicas {
			cl := c.login(by)
			cookie := cl.cookieValue()
			// Every replica has the session cached.
			for i := range c.replicas {
				for range 2 {
					if s := cl.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode; s != http.StatusOK {
						t.Fatalf("%s: before, replica %d: %d", e.name, i, s)
					}
				}
			}
			if s := e.end(c, by, cl, cookie); s != http.StatusOK {
				t.Fatalf("%s on replica %d: %d", e.name, by, s)
			}
			before := c.hits.Load()
			replay := &client{t: t, cookie: map[string]string{session.CookieName: cookie}}
			for i := range c.replicas {
				if s := replay.do("GET", c.url(i, "/api/x"), "X-CSRF", "1").StatusCode; s != http.StatusUnauthorized {
					t.Errorf("%s on replica %d: the next request on replica %d got %d, want 401", e.name, by, i, s)
				}
			}
			if n := c.hits.Load() - before; n != 0 {
				t.Errorf("%s on replica %d: the upstream saw %d requests with the old cookie", e.name, by, n)
			}
		}
	}
}

// admin sends an admin API request to replica i and returns the status.
func (c *cluster) admin(i int, method, path string) int {
	req, _ := http.NewRequest(method, "http://"+c.replicas[i].admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(fmt.Errorf("admin %s %s: %w", method, path, err))
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startRedisCluster starts a three-primary Redis Cluster on free ports and
// returns its URL. It skips without redis-server, unless
// MOAT_TEST_REQUIRE_REDIS_SERVER is set (.ci/run sets it).
func startRedisCluster(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	cli, cerr := exec.LookPath("redis-cli")
	if err != nil || cerr != nil {
		if os.Getenv("MOAT_TEST_REQUIRE_REDIS_SERVER") != "" {
			t.Fatal("MOAT_TEST_REQUIRE_REDIS_SERVER is set but redis-server or redis-cli is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	var ports, addrs []string
	for range 3 {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		cmd := exec.Command(bin, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000", "--port", port,
			"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitRedis(t, cli, port, "PING", "PONG")
		ports, addrs = append(ports, port), append(addrs, "127.0.0.1:"+port)
	}
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, p := range ports {
		waitRedis(t, cli, p, "CLUSTER INFO", "cluster_state:ok")
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// waitRedis polls redis-cli on port until cmd's answer contains want.
func waitRedis(t *testing.T, cli, port, cmd, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command(cli, append([]string{"-p", port}, strings.Fields(cmd)...)...).Output()
		if err == nil && strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis on port %s: %s answered %q, %v; want %q", port, cmd, out, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package redisstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
)

// envRequireServer makes the Sentinel and Cluster tests fail, rather than
// skip, when redis-server is not installed (.ci/run sets it).
const envRequireServer = "MOAT_TEST_REQUIRE_REDIS_SERVER"

// redisServer returns the redis-server binary, for tests that start their
// own Redis processes.
func redisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(envRequireServer) != "" {
			t.Fatalf("%s is set but redis-server is not installed (Debian: apt-get install redis-server)", envRequireServer)
		}
		t.Skip("redis-server is not installed: the Sentinel and Cluster tests start their own Redis processes")
	}
	return bin
}

// spawn starts redis-server with args on a free port and returns the port.
func spawn(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, append(args, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, port, "PING", "+PONG")
	return port
}

// command sends one inline command to 127.0.0.1:port and returns the first
// line of the answer.
func command(port, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "%s\r\n", cmd)
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	for err == nil && (strings.HasPrefix(line, "*") || strings.HasPrefix(line, "$")) { // down to the first scalar
		if n := strings.TrimSpace(line[1:]); n == "0" || n == "-1" {
			return "", nil // empty array, null
		}
		line, err = r.ReadString('\n')
	}
	return strings.TrimSpace(line), err
}

// waitFor polls cmd on port until its answer contains want (20 s at most).
func waitFor(t *testing.T, port, cmd, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := command(port, cmd)
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("127.0.0.1:%s: %s answered %q, %v; want %q", port, cmd, got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openURL opens a store on u with a random prefix.
func openURL(t *testing.T, u string) session.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, withParams(u, "prefix=moattest:"+rand.Text()+":"), Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", u, err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping(%s): %v", u, err)
	}
	return s
}

// openShared opens stores on u as it is, so that they share its prefix:
// the replicas of a coherent-cache test.
func openShared(u string) func(t *testing.T) session.Store {
	return func(t *testing.T) session.Store {
		s, err := Open(t.Context(), u, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// The conformance suite through Sentinel: one primary and one sentinel
// monitoring it, both started here; the store finds the primary by asking
// the sentinel.
func TestSentinel(t *testing.T) {
	u := startSentinel(t)
	storetest.Run(t, func(t *testing.T) session.Store { return openURL(t, u) })
}

// startSentinel starts one primary and one sentinel monitoring it, and
// returns the sentinel URL of that primary.
func startSentinel(t *testing.T) string {
	bin := redisServer(t)
	primary := spawn(t, bin)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte("sentinel monitor moat 127.0.0.1 "+primary+" 1\nsentinel down-after-milliseconds moat 5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := spawn(t, bin, conf, "--sentinel")
	waitFor(t, sentinel, "SENTINEL get-master-addr-by-name moat", "127.0.0.1")
	return "redis+sentinel://127.0.0.1:" + sentinel + "/moat"
}

// TestSentinelCoherentCache: issue 14 through a sentinel: the tracking
// connection goes to the primary the sentinel names.
func TestSentinelCoherentCache(t *testing.T) {
	u := withParams(startSentinel(t), "prefix="+testPrefix())
	storetest.RunCoherentCache(t, openShared(u), nil)
}

// The conformance suite on a three-primary Redis Cluster started here:
// records and their index entries land in different slots and nodes.
func TestCluster(t *testing.T) {
	u := startCluster(t)
	storetest.Run(t, func(t *testing.T) session.Store { return openURL(t, u) })
}

// TestClusterCoherentCache: issue 14 on a three-primary Redis Cluster, with
// one tracking connection per node.
func TestClusterCoherentCache(t *testing.T) {
	u := withParams(startCluster(t), "prefix="+testPrefix())
	storetest.RunCoherentCache(t, openShared(u), nil)
}

// startCluster starts a three-primary Redis Cluster and returns its URL.
func startCluster(t *testing.T) string {
	bin := redisServer(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-server is installed without redis-cli")
	}
	var ports, addrs []string
	for range 3 {
		p := spawn(t, bin, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
		ports, addrs = append(ports, p), append(addrs, "127.0.0.1:"+p)
	}
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, p := range ports {
		waitFor(t, p, "CLUSTER INFO", "cluster_state:ok")
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// A Sentinel failover logs nobody out: while the primary is gone the store
// answers ErrUnavailable (a 503), never "not found" (a logout), and once
// the sentinel has promoted the replica the session written before is
// read, and new writes land, through the same Store.
func TestSentinelFailover(t *testing.T) {
	bin := redisServer(t)
	primary := spawn(t, bin)
	replica := spawn(t, bin, "--replicaof", "127.0.0.1", primary)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte("sentinel monitor moat 127.0.0.1 "+primary+" 1\n"+
		"sentinel down-after-milliseconds moat 500\nsentinel failover-timeout moat 2000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := spawn(t, bin, conf, "--sentinel")
	waitFor(t, sentinel, "SENTINEL get-master-addr-by-name moat", "127.0.0.1")
	waitFor(t, sentinel, "SENTINEL replicas moat", "name") // the sentinel knows the replica
	s := openURL(t, "redis+sentinel://127.0.0.1:"+sentinel+"/moat")
	ctx := t.Context()

	key := session.NewID().Key()
	rec := session.Record{Data: []byte("sealed"), Subject: "alice", SID: "s1"}
	if _, err := s.Set(ctx, key, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, primary, "WAIT 1 1000", ":1") // the write reached the replica
	if got, err := command(primary, "SHUTDOWN NOSAVE"); err == nil && got != "" {
		t.Fatalf("SHUTDOWN: %q", got)
	}

	deadline := time.Now().Add(30 * time.Second)
	outages := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := s.Get(rctx, key)
		cancel()
		if err == nil {
			if string(got.Data) != "sealed" || got.Subject != "alice" {
				t.Fatalf("after failover: %+v", got)
			}
			break
		}
		if !errors.Is(err, session.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("during failover Get returned %v: a session must never look gone while Redis fails over", err)
		}
		outages++
		if time.Now().After(deadline) {
			t.Fatalf("the store did not follow the failover within 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if role, err := command(replica, "ROLE"); role != "master" {
		t.Fatalf("the replica's role after the failover: %q, %v", role, err)
	}
	if _, err := s.Set(ctx, session.NewID().Key(), rec, time.Minute); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	t.Logf("the store answered ErrUnavailable %d times, then followed the failover", outages)
}

// Package redistest starts real Redis processes (a single server, a
// Sentinel, a Cluster) on free ports of 127.0.0.1 for tests, and fails
// rather than skips without redis-server when MOAT_TEST_REQUIRE_REDIS_SERVER
// is set (.ci/run sets it).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// envRequireServer makes the Sentinel and Cluster tests fail, rather than
// skip, when redis-server is not installed (.ci/run sets it).
const envRequireServer = "MOAT_TEST_REQUIRE_REDIS_SERVER"

// RedisServer returns the redis-server binary, for tests that start their
// own Redis processes.
func RedisServer(t *testing.T) string {
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

// Spawn starts redis-server with args on a free port and returns the port.
func Spawn(t *testing.T, bin string, args ...string) string {
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
	WaitFor(t, port, "PING", "+PONG")
	return port
}

// Command sends one inline command to 127.0.0.1:port and returns the first
// line of the answer.
func Command(port, cmd string) (string, error) {
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

// WaitFor polls cmd on port until its answer contains want (20 s at most).
func WaitFor(t *testing.T, port, cmd, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := Command(port, cmd)
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("127.0.0.1:%s: %s answered %q, %v; want %q", port, cmd, got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartCluster starts a three-primary Redis Cluster and returns its URL.
func StartCluster(t *testing.T) string {
	bin := RedisServer(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-server is installed without redis-cli")
	}
	var ports, addrs []string
	for range 3 {
		p := Spawn(t, bin, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
		ports, addrs = append(ports, p), append(addrs, "127.0.0.1:"+p)
	}
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, p := range ports {
		WaitFor(t, p, "CLUSTER INFO", "cluster_state:ok")
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

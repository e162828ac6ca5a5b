package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/redis/redistest"
	"github.com/moat-bff/moat/internal/session/storetest"
)

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
	bin := redistest.RedisServer(t)
	primary := redistest.Spawn(t, bin)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte("sentinel monitor moat 127.0.0.1 "+primary+" 1\nsentinel down-after-milliseconds moat 5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := redistest.Spawn(t, bin, conf, "--sentinel")
	redistest.WaitFor(t, sentinel, "SENTINEL get-master-addr-by-name moat", "127.0.0.1")
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
	u := redistest.StartCluster(t)
	storetest.Run(t, func(t *testing.T) session.Store { return openURL(t, u) })
}

// TestClusterCoherentCache: issue 14 on a three-primary Redis Cluster, with
// one tracking connection per node.
func TestClusterCoherentCache(t *testing.T) {
	u := withParams(redistest.StartCluster(t), "prefix="+testPrefix())
	storetest.RunCoherentCache(t, openShared(u), nil)
}

// A Sentinel failover logs nobody out: while the primary is gone the store
// answers ErrUnavailable (a 503), never "not found" (a logout), and once
// the sentinel has promoted the replica the session written before is
// read, and new writes land, through the same Store.
func TestSentinelFailover(t *testing.T) {
	bin := redistest.RedisServer(t)
	primary := redistest.Spawn(t, bin)
	replica := redistest.Spawn(t, bin, "--replicaof", "127.0.0.1", primary)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte("sentinel monitor moat 127.0.0.1 "+primary+" 1\n"+
		"sentinel down-after-milliseconds moat 500\nsentinel failover-timeout moat 2000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := redistest.Spawn(t, bin, conf, "--sentinel")
	redistest.WaitFor(t, sentinel, "SENTINEL get-master-addr-by-name moat", "127.0.0.1")
	redistest.WaitFor(t, sentinel, "SENTINEL replicas moat", "name") // the sentinel knows the replica
	s := openURL(t, "redis+sentinel://127.0.0.1:"+sentinel+"/moat")
	ctx := t.Context()

	key := session.NewID().Key()
	rec := session.Record{Data: []byte("sealed"), Subject: "alice", SID: "s1"}
	if _, err := s.Set(ctx, key, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, primary, "WAIT 1 1000", ":1") // the write reached the replica
	if got, err := redistest.Command(primary, "SHUTDOWN NOSAVE"); err == nil && got != "" {
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
	if role, err := redistest.Command(replica, "ROLE"); role != "master" {
		t.Fatalf("the replica's role after the failover: %q, %v", role, err)
	}
	if _, err := s.Set(ctx, session.NewID().Key(), rec, time.Minute); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	t.Logf("the store answered ErrUnavailable %d times, then followed the failover", outages)
}

package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/tcprelay"
)

// These tests need no Redis: they point stores at a closed port and always
// run.

// closedPort is a local address where nothing listens (tcpmux, port 1).
const closedPort = "127.0.0.1:1"

// outageLimit is how long a call may take against an unreachable Redis with
// the default 1s timeout.
const outageLimit = 2 * time.Second

// TestOutage checks that with Redis unreachable Open still returns a Store
// (moat starts and reports not ready), and every call fails quickly with
// ErrUnavailable, for each deployment mode.
func TestOutage(t *testing.T) {
	for _, u := range []string{
		"redis://:s3cret@" + closedPort + "/0",
		"redis+sentinel://" + closedPort + "/mymaster",
		"redis+cluster://" + closedPort,
	} {
		t.Run(strings.SplitN(u, ":", 2)[0], func(t *testing.T) {
			t.Parallel()
			var log logtest.Buffer
			begin := time.Now()
			s, err := Open(t.Context(), u, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if err != nil {
				t.Fatalf("Open with Redis down: %v; want a Store that retries", err)
			}
			defer s.Close()
			if d := time.Since(begin); d > outageLimit {
				t.Errorf("Open took %v with Redis down", d)
			}
			if !strings.Contains(log.String(), "unreachable") {
				t.Errorf("no warning logged for the unreachable Redis:\n%s", log.String())
			}
			if strings.Contains(log.String(), "s3cret") {
				t.Errorf("the log shows the password:\n%s", log.String())
			}
			// Twice: the first calls and those after redialAfter both
			// fail fast.
			checkAllUnavailable(t, s, outageLimit)
			time.Sleep(redialAfter)
			checkAllUnavailable(t, s, outageLimit)
		})
	}
}

// TestOutageGet is the plain case the brief asks for: Get on a Store at a
// closed port returns ErrUnavailable within about two seconds.
func TestOutageGet(t *testing.T) {
	s, err := Open(t.Context(), "redis://"+closedPort, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	begin := time.Now()
	_, err = s.Get(t.Context(), session.NewID().Key())
	if d := time.Since(begin); d > outageLimit {
		t.Errorf("Get took %v", d)
	}
	if !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Get = %v, want ErrUnavailable", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v: a store timeout must not look like the caller's context ending", err)
	}
}

// TestOutageCancelledContext checks that a caller whose context is done
// gets its context's error, not ErrUnavailable: a client gone is not an
// outage.
func TestOutageCancelledContext(t *testing.T) {
	s, err := Open(t.Context(), "redis://"+closedPort, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	k := session.NewID().Key()
	for name, call := range allCalls(k) {
		err := call(ctx, s)
		if !errors.Is(err, context.Canceled) || errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s with a cancelled context = %v; want context.Canceled only", name, err)
		}
	}
}

// TestOpenContextDone checks that Open gives up with the context.
func TestOpenContextDone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s, err := Open(ctx, "redis://"+closedPort, Options{}); !errors.Is(err, context.Canceled) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestCloseWhileDown(t *testing.T) {
	for _, u := range []string{"redis://" + closedPort, "redis+cluster://" + closedPort} {
		s, err := Open(t.Context(), u, Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		checkAllUnavailable(t, s, outageLimit)
	}
}

// allCalls is one call of every Store method that can reach Redis.
func allCalls(k session.Key) map[string]func(context.Context, session.Store) error {
	rec := session.Record{Data: []byte("x"), Subject: "alice", SID: "s1"}
	return map[string]func(context.Context, session.Store) error{
		"Get": func(ctx context.Context, s session.Store) error { _, err := s.Get(ctx, k); return err },
		"Set": func(ctx context.Context, s session.Store) error {
			_, err := s.Set(ctx, k, rec, time.Minute)
			return err
		},
		"SetNoSubject": func(ctx context.Context, s session.Store) error {
			_, err := s.Set(ctx, k, session.Record{}, time.Minute)
			return err
		},
		"CAS": func(ctx context.Context, s session.Store) error {
			_, err := s.CompareAndSwap(ctx, k, 7, rec, time.Minute)
			return err
		},
		"Take":          func(ctx context.Context, s session.Store) error { _, err := s.Take(ctx, k); return err },
		"Delete":        func(ctx context.Context, s session.Store) error { return s.Delete(ctx, k) },
		"DeleteBy":      func(ctx context.Context, s session.Store) error { _, err := s.DeleteBy(ctx, "alice", "s1"); return err },
		"ListBySubject": func(ctx context.Context, s session.Store) error { _, err := s.ListBySubject(ctx, "alice"); return err },
		"Ping":          func(ctx context.Context, s session.Store) error { return s.Ping(ctx) },
	}
}

// checkAllUnavailable fails unless every method returns ErrUnavailable,
// each within limit (0: no limit).
func checkAllUnavailable(t *testing.T, s session.Store, limit time.Duration) {
	t.Helper()
	for name, call := range allCalls(session.NewID().Key()) {
		begin := time.Now()
		err := call(t.Context(), s)
		if d := time.Since(begin); limit > 0 && d > limit {
			t.Errorf("%s took %v, want at most %v", name, d, limit)
		}
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s = %v, want ErrUnavailable", name, err)
		}
	}
}

// hungServer accepts connections and never answers, like a Redis that is
// hung or a host that completes the handshake and then goes silent.
func hungServer(t *testing.T) string {
	t.Helper()
	s, err := tcprelay.NewSilent()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addr()
}

// TestHungServer checks the timeouts against a server that accepts and
// never answers: Open returns, calls fail with ErrUnavailable within about
// the timeout, and a caller's shorter deadline wins with its own error.
func TestHungServer(t *testing.T) {
	addr := hungServer(t)
	begin := time.Now()
	s, err := Open(t.Context(), "redis://"+addr+"?timeout=300ms", Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if d := time.Since(begin); d > outageLimit {
		t.Errorf("Open took %v", d)
	}
	checkAllUnavailable(t, s, outageLimit)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Get(ctx, session.NewID().Key()); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Get with a 50ms deadline = %v; want context.DeadlineExceeded only", err)
	}
}

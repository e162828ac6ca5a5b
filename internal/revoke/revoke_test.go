package revoke

import (
	"context"
	"errors"
	"github.com/moat-bff/moat/internal/logtest"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type fakeIdP struct {
	mu       sync.Mutex
	failures int
	calls    []string
}

func (f *fakeIdP) Revoke(ctx context.Context, token, hint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, token)
	if f.failures > 0 {
		f.failures--
		return errors.New("503")
	}
	return nil
}

func TestRetriesThenSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := &fakeIdP{failures: 2}
		q := Start(idp, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Workers: 1})
		q.Add(Job{Token: "rt-1"})
		time.Sleep(10 * time.Second) // fake time: 1s + 5s of backoff pass
		synctest.Wait()
		q.Stop()
		if len(idp.calls) != 3 {
			t.Errorf("calls = %v, want 3 attempts", idp.calls)
		}
	})
}

func TestGivesUpAndStopsCleanly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		idp := &fakeIdP{failures: 100}
		var logs logtest.Buffer
		q := Start(idp, slog.New(slog.NewJSONHandler(&logs, nil)), Options{Workers: 2, Backoff: []time.Duration{time.Second}})
		q.Add(Job{Token: "rt-1", Subject: "alice", Session: "0123456789abcdef"})
		q.Add(Job{Token: ""}) // ignored
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if len(idp.calls) != 2 {
			t.Errorf("calls = %v, want 2", idp.calls)
		}
		q.Stop()
		q.Stop()
		q.Add(Job{Token: "after-stop"}) // dropped, not blocked
		// Giving up is an audit event naming the user and the session,
		// never the token.
		if l := logs.String(); !strings.Contains(l, `"audit":true,"event":"revoke_failed","sub":"alice","session":"0123456789abcdef"`) || strings.Contains(l, "rt-1") {
			t.Errorf("audit log: %s", l)
		}
	})
}

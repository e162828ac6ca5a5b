// Package revoke revokes refresh tokens at the IdP in the background, so a
// slow or failing revocation endpoint never holds up a logout, and retries
// while the IdP is unavailable (RFC 7009 §2.2.1: on 503 the client must
// assume the token still exists and may retry later).
package revoke

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Revoker is the IdP's side; *oidc.Client implements it.
type IdP interface {
	Revoke(ctx context.Context, token, hint string) error
}

// Job is one refresh token to revoke; Subject and Session only label logs.
type Job struct {
	Token   string
	Subject string
	Session string
}

// Queue is a bounded queue with a few workers. Safe for concurrent use.
type Queue struct {
	idp     IdP
	log     *slog.Logger
	jobs    chan Job
	backoff []time.Duration
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	stopped chan struct{}
	once    sync.Once
}

// Options configures a Queue.
type Options struct {
	Workers int // 4 when zero
	Size    int // 1024 when zero; a full queue drops jobs with a warning
	// Backoff lists the waits before each retry; 1s, 5s, 30s when nil.
	Backoff []time.Duration
}

// Start starts the workers; Stop ends them.
func Start(idp IdP, log *slog.Logger, o Options) *Queue {
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Size == 0 {
		o.Size = 1024
	}
	if o.Backoff == nil {
		o.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{idp: idp, log: log, jobs: make(chan Job, o.Size), backoff: o.Backoff, cancel: cancel, stopped: make(chan struct{})}
	for range o.Workers {
		q.wg.Go(func() { q.work(ctx) })
	}
	return q
}

// Add queues j without blocking.
func (q *Queue) Add(j Job) {
	if j.Token == "" {
		return
	}
	select {
	case <-q.stopped:
		q.log.Warn("refresh token not revoked: shutting down", "audit", true, "event", "revoke_failed", "sub", j.Subject, "session", j.Session)
	case q.jobs <- j:
	default:
		q.log.Warn("refresh token not revoked: revocation queue full", "audit", true, "event", "revoke_failed", "sub", j.Subject, "session", j.Session)
	}
}

// Stop ends the workers; jobs still queued or waiting for a retry are
// dropped with a warning.
func (q *Queue) Stop() {
	q.once.Do(func() {
		close(q.stopped)
		q.cancel()
		q.wg.Wait()
		for n := len(q.jobs); n > 0; n-- {
			j := <-q.jobs
			q.log.Warn("refresh token not revoked: shutting down", "audit", true, "event", "revoke_failed", "sub", j.Subject, "session", j.Session)
		}
	})
}

func (q *Queue) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q.jobs:
			q.revoke(ctx, j)
		}
	}
}

func (q *Queue) revoke(ctx context.Context, j Job) {
	for attempt := 0; ; attempt++ {
		err := q.idp.Revoke(ctx, j.Token, "refresh_token")
		if err == nil {
			q.log.Info("refresh token revoked", "audit", true, "event", "revoked", "sub", j.Subject, "session", j.Session)
			return
		}
		if attempt == len(q.backoff) || ctx.Err() != nil {
			q.log.Warn("revoking a refresh token failed; giving up", "audit", true, "event", "revoke_failed", "sub", j.Subject, "session", j.Session, "attempts", attempt+1, "error", err)
			return
		}
		q.log.Info("revoking a refresh token failed; retrying", "sub", j.Subject, "session", j.Session, "error", err)
		t := time.NewTimer(q.backoff[attempt])
		select {
		case <-ctx.Done():
			t.Stop()
			q.log.Warn("refresh token not revoked: shutting down", "audit", true, "event", "revoke_failed", "sub", j.Subject, "session", j.Session)
			return
		case <-t.C:
		}
	}
}

package token_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/testclock"
	"github.com/moat-bff/moat/internal/token"
)

// idp stands in for the token endpoint: it records every refresh token
// presented and rotates it (rt-0 → rt-1 …), unless err says otherwise.
type idp struct {
	clock *testclock.Clock
	mu    sync.Mutex
	seen  []string
	err   error
	// during, if set, runs inside the refresh, before the answer: what
	// another replica does meanwhile.
	during func()
}

func (p *idp) Refresh(ctx context.Context, refreshToken, subject string, _ *dpop.Key) (oidc.Tokens, *oidc.Identity, error) {
	p.mu.Lock()
	p.seen = append(p.seen, refreshToken)
	n, err, during := len(p.seen), p.err, p.during
	p.mu.Unlock()
	if during != nil {
		during()
	}
	if err != nil {
		return oidc.Tokens{}, nil, err
	}
	return oidc.Tokens{AccessToken: fmt.Sprintf("at-%d", n), RefreshToken: fmt.Sprintf("rt-%d", n),
		TokenType: "Bearer", Expiry: p.clock.Now().Add(time.Hour)}, nil, nil
}

// RefreshResource answers like Refresh, with the resource in the token.
func (p *idp) RefreshResource(ctx context.Context, refreshToken, subject, resource string, key *dpop.Key) (oidc.Tokens, *oidc.Identity, error) {
	t, id, err := p.Refresh(ctx, refreshToken, subject, key)
	t.AccessToken += "@" + resource
	return t, id, err
}

func (p *idp) presented() []string { p.mu.Lock(); defer p.mu.Unlock(); return slices.Clone(p.seen) }

// fixture is one session whose access token has just expired, in a store
// that replicas share.
type fixture struct {
	t     testing.TB
	clock *testclock.Clock
	store session.Store
	idp   *idp
	key   session.Key
	logs  logtest.Buffer // the token managers' logs
	// poll is the replicas' PollInterval: short in tests, zero (moat's
	// default) in the benchmark.
	poll time.Duration
}

const leaseTTL = 10 * time.Second

func newFixture(t testing.TB, lease session.Lease) *fixture {
	c := testclock.New(time.Now())
	f := &fixture{t: t, clock: c, store: memory.New(memory.Options{Now: c.Now}), idp: &idp{clock: c}, poll: time.Millisecond}
	t.Cleanup(func() { f.store.Close() })
	l, err := f.sessions().Create(context.Background(), httptest.NewRecorder(), session.Session{Subject: "alice",
		Tokens: session.Tokens{AccessToken: "at-0", RefreshToken: "rt-0", Expiry: c.Now().Add(time.Minute), Obtained: c.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Holder != "" {
		l.Lease = lease
		if err := f.sessions().Save(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	f.key = l.Key
	c.Advance(2 * time.Minute) // the access token has expired
	return f
}

// sessions is a replica's own session manager on the shared store.
func (f *fixture) sessions() *session.Manager {
	return session.NewManager(session.ManagerOptions{Store: f.store, Codec: testCodec, Now: f.clock.Now,
		IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, Logger: slog.New(slog.DiscardHandler),
		CacheTTL: 500 * time.Millisecond, CacheSize: 10})
}

// replica is a replica's token manager.
func (f *fixture) replica() (*token.Manager, *session.Manager) {
	sm := f.sessions()
	return token.NewManager(token.Options{Sessions: sm, Refresher: f.idp, Skew: 30 * time.Second,
		LeaseTTL: leaseTTL, PollInterval: f.poll, Logger: slog.New(slog.NewJSONHandler(&f.logs, nil))}), sm
}

// accessToken asks a fresh replica for the session's token.
func (f *fixture) accessToken(ctx context.Context) (string, error) {
	tm, sm := f.replica()
	l, err := sm.LoadKey(ctx, f.key)
	if err != nil {
		return "", err
	}
	return tm.AccessToken(ctx, l)
}

// refreshOnceOn runs get from callers goroutines on each of replicas
// replicas, each with the session as that replica loads it, and fails the
// test unless every caller got at-1 from one refresh with rt-0.
func (f *fixture) refreshOnceOn(replicas, callers int, get func(*token.Manager, *session.Loaded) (string, error)) {
	f.t.Helper()
	var wg sync.WaitGroup
	tokens := make(chan string, replicas*callers)
	for range replicas {
		tm, sm := f.replica()
		for range callers {
			wg.Go(func() {
				l, err := sm.LoadKey(context.Background(), f.key)
				if err != nil {
					f.t.Error(err)
					return
				}
				at, err := get(tm, l)
				if err != nil {
					f.t.Error(err)
				}
				tokens <- at
			})
		}
	}
	wg.Wait()
	close(tokens)
	for at := range tokens {
		if at != "at-1" {
			f.t.Errorf("a caller got %q, want at-1", at)
		}
	}
	if got := f.idp.presented(); !slices.Equal(got, []string{"rt-0"}) {
		f.t.Errorf("refresh tokens presented: %q, want rt-0 once", got)
	}
}

func (f *fixture) stored() *session.Loaded {
	l, err := f.sessions().Fresh(context.Background(), f.key)
	if err != nil {
		f.t.Fatalf("reading the session: %v", err)
	}
	return l
}

var testCodec = func() *session.Codec {
	k, _ := session.ParseKey(session.NewKey())
	c, _ := session.NewCodec(k)
	return c
}()

// Three replicas with twenty requests each on one expired session: one
// refresh at the IdP, everyone gets its result, and the lease is released.
func TestReplicasRefreshOnce(t *testing.T) {
	f := newFixture(t, session.Lease{})
	f.refreshOnceOn(3, 20, func(tm *token.Manager, l *session.Loaded) (string, error) {
		return tm.AccessToken(context.Background(), l)
	})
	if l := f.stored(); l.Tokens.RefreshToken != "rt-1" || l.Lease.Holder != "" {
		t.Errorf("stored: refresh token %q, lease %+v", l.Tokens.RefreshToken, l.Lease)
	}
}

// A lease left by a replica that died blocks the refresh only until it
// expires; then another replica takes over.
func TestCrashedHoldersLeaseExpires(t *testing.T) {
	f := newFixture(t, session.Lease{Holder: "crashed", Until: time.Now().Add(2*time.Minute + leaseTTL)})
	tm, sm := f.replica()
	l, err := sm.LoadKey(context.Background(), f.key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := tm.AccessToken(ctx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("while the lease is held: %v, want the caller's deadline", err)
	}
	if got := f.idp.presented(); len(got) != 0 {
		t.Fatalf("refreshed under another holder's lease: %q", got)
	}
	f.clock.Advance(leaseTTL + time.Second)
	if at, err := tm.AccessToken(context.Background(), l); err != nil || at != "at-1" {
		t.Fatalf("after the lease expired: %q, %v", at, err)
	}
	if l := f.stored(); l.Lease.Holder != "" || l.Tokens.RefreshToken != "rt-1" {
		t.Errorf("stored: refresh token %q, lease %+v", l.Tokens.RefreshToken, l.Lease)
	}
}

// A holder whose lease was taken over meanwhile does not overwrite the new
// holder's session: its caller gets a 503-class error, the session stays.
func TestLostLeaseIsNotCommitted(t *testing.T) {
	f := newFixture(t, session.Lease{})
	f.idp.during = func() {
		other := f.sessions()
		l, err := other.Fresh(context.Background(), f.key)
		if err != nil {
			t.Error(err)
			return
		}
		l.Lease = session.Lease{Holder: "other", Until: f.clock.Now().Add(leaseTTL)}
		if err := other.Save(context.Background(), l); err != nil {
			t.Error(err)
		}
	}
	_, err := f.accessToken(context.Background())
	if !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, token.ErrSessionEnded) {
		t.Fatalf("lost lease: %v, want oidc.ErrUnavailable", err)
	}
	if l := f.stored(); l.Lease.Holder != "other" || l.Tokens.RefreshToken != "rt-0" {
		t.Errorf("stored: refresh token %q, lease %+v; want the other holder's state untouched", l.Tokens.RefreshToken, l.Lease)
	}
}

// The IdP's answers decide the session's fate: invalid_grant ends it, a
// transient failure keeps it and releases the lease for the next try, and
// a session with no refresh token ends when its access token does.
func TestRefreshOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		noRefresh bool
		ended     bool
		audit     string // the audit event logged, if any
	}{
		{name: "invalid_grant", err: fmt.Errorf("%w: token revoked", oidc.ErrInvalidGrant), ended: true, audit: "session_ended"},
		{name: "transient", err: fmt.Errorf("%w: 502", oidc.ErrUnavailable), audit: "refresh_failed"},
		{name: "client rejected", err: fmt.Errorf("%w: %w: invalid_client", oidc.ErrClientRejected, oidc.ErrUnavailable)},
		{name: "no refresh token", noRefresh: true, ended: true, audit: "session_ended"},
		{name: "no DPoP key", err: oidc.ErrNoDPoPKey, ended: true, audit: "session_ended"}, // a session from before oidc.dpop
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, session.Lease{})
			if c.noRefresh {
				l := f.stored()
				l.Tokens.RefreshToken = ""
				if err := f.sessions().Save(context.Background(), l); err != nil {
					t.Fatal(err)
				}
			}
			f.idp.err = c.err
			_, err := f.accessToken(context.Background())
			if l := f.logs.String(); c.audit == "" && strings.Contains(l, `"audit":true`) {
				t.Errorf("an audit line for every session while the client is rejected: %s", l)
			} else if c.audit != "" && (!strings.Contains(l, `"audit":true,"event":"`+c.audit+`"`) || !strings.Contains(l, `"sub":"alice"`) ||
				!strings.Contains(l, `"session":"`+f.key.Short()+`"`) || strings.Contains(l, "rt-0")) {
				t.Errorf("audit log: %s", l)
			}
			if c.ended {
				if !errors.Is(err, token.ErrSessionEnded) {
					t.Fatalf("err = %v, want ErrSessionEnded", err)
				}
				if _, err := f.store.Get(context.Background(), f.key); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("the ended session is still stored: %v", err)
				}
				return
			}
			if !errors.Is(err, oidc.ErrUnavailable) || errors.Is(err, token.ErrSessionEnded) {
				t.Fatalf("err = %v, want oidc.ErrUnavailable", err)
			}
			if l := f.stored(); l.Lease.Holder != "" || l.Tokens.RefreshToken != "rt-0" {
				t.Fatalf("after a transient failure: refresh token %q, lease %+v", l.Tokens.RefreshToken, l.Lease)
			}
			f.idp.err = nil
			if at, err := f.accessToken(context.Background()); err != nil || at != "at-2" {
				t.Fatalf("retry: %q, %v", at, err)
			}
		})
	}
}

// A fresh token is handed out without asking the IdP.
func TestFreshTokenNeedsNoRefresh(t *testing.T) {
	f := newFixture(t, session.Lease{})
	f.clock.Advance(-2 * time.Minute)
	if at, err := f.accessToken(context.Background()); err != nil || at != "at-0" {
		t.Fatalf("%q, %v", at, err)
	}
	if got := f.idp.presented(); len(got) != 0 {
		t.Errorf("refreshed a fresh token: %q", got)
	}
}

// TestResourceTokens: a token for a resource (RFC 8707) is obtained with
// the session's refresh token, once for concurrent callers on several
// replicas, kept beside the session's own token, and the rotated refresh
// token is the one presented next: never a spent one.
func TestResourceTokens(t *testing.T) {
	f := newFixture(t, session.Lease{})
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Go(func() {
			tm, sm := f.replica()
			l, err := sm.LoadKey(ctx, f.key)
			if err != nil {
				t.Error(err)
				return
			}
			got[i], err = tm.AccessTokenFor(ctx, l, "https://api-a.example")
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, at := range got {
		if at != "at-1@https://api-a.example" {
			t.Fatalf("callers got %q, want one token for the resource", got)
		}
	}
	s := f.stored()
	if s.Tokens.AccessToken != "at-0" || s.Tokens.RefreshToken != "rt-1" || s.Tokens.Resources["https://api-a.example"].AccessToken != "at-1@https://api-a.example" {
		t.Fatalf("stored tokens %+v", s.Tokens)
	}
	if at, err := f.accessToken(ctx); err != nil || at != "at-2" {
		t.Fatalf("the session's own token = %q, %v; want a refresh with the rotated refresh token", at, err)
	}
	if p := f.idp.presented(); !slices.Equal(p, []string{"rt-0", "rt-1"}) {
		t.Fatalf("refresh tokens presented %v, want rt-0 then rt-1 (each once)", p)
	}
	if res := f.stored().Tokens.Resources["https://api-a.example"]; res.AccessToken != "at-1@https://api-a.example" {
		t.Fatalf("a refresh of the session's own token lost the resource token: %+v", res)
	}
}

// TestReplaceAccessToken: a fresh token the IdP refused is replaced by one
// refresh, for concurrent callers on several replicas; a caller that still
// names the replaced token gets the new one without another refresh.
func TestReplaceAccessToken(t *testing.T) {
	f := newFixture(t, session.Lease{})
	f.clock.Advance(-2 * time.Minute) // at-0 is fresh
	f.refreshOnceOn(3, 10, func(tm *token.Manager, l *session.Loaded) (string, error) {
		return tm.ReplaceAccessToken(context.Background(), l, "at-0")
	})
	// A token other than the stale one is handed out as it is.
	tm, sm := f.replica()
	l, _ := sm.LoadKey(context.Background(), f.key)
	if at, err := tm.ReplaceAccessToken(context.Background(), l, "at-0"); err != nil || at != "at-1" {
		t.Errorf("= %q, %v", at, err)
	}
	if n := len(f.idp.presented()); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
}

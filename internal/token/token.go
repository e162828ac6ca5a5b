// Package token hands out a session's access token, refreshing it before it
// expires. A refresh happens at most once per session at a time: callers in
// one process share it through singleflight, and replicas sharing a store
// coordinate through a short lease taken by compare-and-swap, so a rotated
// refresh token is never presented twice (RFC 9700 §4.14.2).
package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/moat-bff/moat/internal/dpop"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/session"
	"golang.org/x/sync/singleflight"
)

// ErrSessionEnded means the session is over (its refresh token was refused,
// or it was logged out meanwhile). It is a 401.
var ErrSessionEnded = errors.New("token: session ended")

// Refresher redeems refresh tokens; *oidc.Client implements it.
// key is the session's DPoP key (nil without oidc.dpop): the request
// carries its proof and the new tokens must be bound to it (RFC 9449 §5).
type Refresher interface {
	Refresh(ctx context.Context, refreshToken, subject string, key *dpop.Key) (oidc.Tokens, *oidc.Identity, error)
	// RefreshResource redeems one for a token restricted to resource
	// (RFC 8707 §2.2).
	RefreshResource(ctx context.Context, refreshToken, subject, resource string, key *dpop.Key) (oidc.Tokens, *oidc.Identity, error)
}

// Options configures a Manager.
type Options struct {
	Sessions  *session.Manager
	Refresher Refresher
	// Skew: tokens expiring within it are refreshed first.
	Skew time.Duration
	// LeaseTTL bounds a refresh lease: a replica that has watched the same
	// lease for this long, on its own clock, takes it over, so one that
	// dies while holding it blocks the others for at most this long after
	// they first see it. It must exceed the IdP timeout.
	LeaseTTL time.Duration
	// PollInterval is how often a replica waiting for another replica's
	// refresh rereads the session once it has waited a second (default
	// 50 ms). Before that it rereads every fastPoll, so that a refresh at
	// a responsive IdP reaches the waiting replicas within fastPoll of
	// its end, for a few store reads per refresh.
	PollInterval time.Duration
	Logger       *slog.Logger
	// OnRefresh, if set, observes each refresh attempt's outcome:
	// "ok", "invalid_grant" (any refusal of the grant), "client_rejected"
	// or "transient".
	OnRefresh func(outcome string)
}

// fastPoll and fastPollFor: how often, and for how long, a replica rereads
// a session whose refresh another replica holds, before PollInterval.
const (
	fastPoll    = 5 * time.Millisecond
	fastPollFor = time.Second
)

// Manager is safe for concurrent use.
type Manager struct {
	o     Options
	group singleflight.Group
}

// NewManager returns a Manager.
func NewManager(o Options) *Manager {
	if o.PollInterval == 0 {
		o.PollInterval = 50 * time.Millisecond
	}
	if o.OnRefresh == nil {
		o.OnRefresh = func(string) {}
	}
	return &Manager{o: o}
}

// AccessToken returns a usable access token for l, refreshing it first if it
// expires within the skew. On success l holds the current session. Errors:
// ErrSessionEnded, or one wrapping oidc.ErrUnavailable or
// session.ErrUnavailable (a 503 that keeps the session).
func (m *Manager) AccessToken(ctx context.Context, l *session.Loaded) (string, error) {
	return m.AccessTokenFor(ctx, l, "")
}

// AccessTokenFor is AccessToken for a token restricted to resource (RFC
// 8707; "" is the session's own token). A resource token is obtained with
// the session's refresh token, under the same lease as any refresh, so a
// rotated refresh token is never presented twice.
func (m *Manager) AccessTokenFor(ctx context.Context, l *session.Loaded, resource string) (string, error) {
	return m.accessToken(ctx, l, resource, "")
}

// ReplaceAccessToken returns a session access token other than stale,
// which the IdP refused before its expiry (a revoked token): it refreshes,
// under the lease, unless another caller or replica already replaced it.
// Errors as AccessToken; a dead refresh token ends the session.
func (m *Manager) ReplaceAccessToken(ctx context.Context, l *session.Loaded, stale string) (string, error) {
	return m.accessToken(ctx, l, "", stale)
}

// accessToken is AccessTokenFor that also refreshes a fresh token equal
// to stale ("": none is).
func (m *Manager) accessToken(ctx context.Context, l *session.Loaded, resource, stale string) (string, error) {
	if t := l.Tokens.For(resource); usable(t, m.o.Sessions.Now(), m.o.Skew, stale) {
		return t.AccessToken, nil
	}
	// The shared refresh must not die with the first caller's request, but it
	// is bounded: by the IdP timeout inside, and by the lease here.
	ch := m.group.DoChan(string(l.Key)+"\x00"+resource+"\x00"+stale, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*m.o.LeaseTTL)
		defer cancel()
		return m.refresh(ctx, l.Key, resource, stale)
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		cur := res.Val.(*session.Loaded)
		*l = *cur
		return cur.Tokens.For(resource).AccessToken, nil
	}
}

// refresh returns the session under key with a fresh access token, taking
// the lease, waiting for another holder, or taking over an expired lease.
func (m *Manager) refresh(ctx context.Context, key session.Key, resource, stale string) (*session.Loaded, error) {
	sessions := m.o.Sessions
	var waited time.Duration
	// A lease is judged by how long this replica has watched it, on its own
	// clock, never by a time another replica wrote: replicas' clocks may
	// disagree by more than a lease lasts. The holder took the lease before
	// it was first seen here, so by the time a lease has been watched for
	// LeaseTTL the holder's refresh (bounded by the IdP timeout, which
	// LeaseTTL exceeds) is over, whatever the clocks say.
	var watched string
	var since time.Time
	for {
		l, err := sessions.Fresh(ctx, key) // the lease is decided on the store's state, never a cached one
		if errors.Is(err, session.ErrNoSession) {
			return nil, ErrSessionEnded
		}
		if err != nil {
			return nil, err
		}
		now := sessions.Now()
		if usable(l.Tokens.For(resource), now, m.o.Skew, stale) {
			return l, nil // another caller or replica refreshed meanwhile
		}
		if l.Lease.Holder != "" && l.Lease.Holder != watched {
			watched, since = l.Lease.Holder, now
		}
		if l.Lease.Holder != "" && now.Sub(since) < m.o.LeaseTTL {
			wait := m.o.PollInterval
			if waited < fastPollFor {
				wait = min(fastPoll, wait)
			}
			if err := sleep(ctx, wait); err != nil {
				return nil, fmt.Errorf("%w: waiting for another replica's refresh: %v", oidc.ErrUnavailable, err)
			}
			waited += wait
			continue
		}
		if l.Tokens.RefreshToken == "" {
			if resource != "" {
				return nil, fmt.Errorf("%w: no refresh token to obtain a token for resource %q", oidc.ErrUnavailable, resource)
			}
			m.end(ctx, l, "access token expired and there is no refresh token")
			return nil, ErrSessionEnded
		}
		holder := newHolder()
		// Until is written for replicas of earlier versions, which judge
		// the lease by it; this version does not read it.
		l.Lease = session.Lease{Holder: holder, Until: now.Add(m.o.LeaseTTL)}
		if err := sessions.Save(ctx, l); errors.Is(err, session.ErrConflict) {
			continue // somebody else wrote first; look again
		} else if errors.Is(err, session.ErrNoSession) {
			return nil, ErrSessionEnded
		} else if err != nil {
			return nil, err
		}
		return m.redeem(ctx, l, holder, resource)
	}
}

// redeem presents the refresh token while holding the lease and commits
// the outcome.
func (m *Manager) redeem(ctx context.Context, l *session.Loaded, holder, resource string) (*session.Loaded, error) {
	var tok oidc.Tokens
	var id *oidc.Identity
	key, err := l.DPoPKey()
	switch {
	case err != nil:
		err = fmt.Errorf("%w: the session's DPoP key: %v", oidc.ErrUnavailable, err)
	case resource == "":
		tok, id, err = m.o.Refresher.Refresh(ctx, l.Tokens.RefreshToken, l.Subject, key)
	default:
		tok, id, err = m.o.Refresher.RefreshResource(ctx, l.Tokens.RefreshToken, l.Subject, resource, key)
	}
	switch {
	case errors.Is(err, oidc.ErrInvalidGrant):
		// Any 4xx about the grant (oidc.ClassifyTokenError): the refresh
		// token is dead and is never presented again.
		m.o.OnRefresh("invalid_grant")
		m.end(ctx, l, "refresh token refused", "error", err)
		return nil, ErrSessionEnded
	case errors.Is(err, oidc.ErrNoDPoPKey):
		// A session from before oidc.dpop was turned on: its refresh
		// would bring unbound tokens. A new login binds them.
		m.o.OnRefresh("invalid_grant")
		m.end(ctx, l, "the session has no DPoP key (it predates oidc.dpop)")
		return nil, ErrSessionEnded
	case errors.Is(err, oidc.ErrSubjectChanged):
		m.o.OnRefresh("invalid_grant")
		m.end(ctx, l, "refreshed ID token names another subject", "error", err)
		return nil, ErrSessionEnded
	case errors.Is(err, oidc.ErrClientRejected):
		// moat's client is refused: every session would log the same line,
		// so the oidc client logs it once a minute instead.
		m.o.OnRefresh("client_rejected")
		m.o.Logger.Debug("token refresh failed: client rejected; the session is kept", "session", l.Key.Short())
		m.commit(ctx, l.Key, holder, func(*session.Session) {})
		return nil, err
	case err != nil:
		m.o.OnRefresh("transient")
		m.o.Logger.Warn("token refresh failed; the session is kept", "audit", true, "event", "refresh_failed", "session", l.Key.Short(), "sub", l.Subject, "error", err)
		m.commit(ctx, l.Key, holder, func(*session.Session) {})
		return nil, err
	}
	m.o.OnRefresh("ok")
	now := m.o.Sessions.Now()
	l, err = m.commit(ctx, l.Key, holder, func(s *session.Session) {
		s.Tokens.RefreshToken = tok.RefreshToken
		if resource != "" {
			res := maps.Clone(s.Tokens.Resources) // never write a map a cached copy may share
			if res == nil {
				res = map[string]session.ResourceToken{}
			}
			s.Tokens.Resources = res
			res[resource] = session.ResourceToken{AccessToken: tok.AccessToken, Expiry: tok.Expiry, Obtained: now}
		} else {
			s.Tokens.AccessToken = tok.AccessToken
			s.Tokens.TokenType = tok.TokenType
			s.Tokens.Expiry = tok.Expiry
			s.Tokens.Obtained = now
			if tok.Scope != "" { // RFC 6749 §5.1, §6: none is the scope granted before
				s.Tokens.Scope = tok.Scope
			}
		}
		if tok.IDToken != "" {
			s.Tokens.IDToken = tok.IDToken
		}
		if tok.RefreshExpiresIn > 0 { // the session may not outlive its refresh token
			if end := now.Add(tok.RefreshExpiresIn); end.Before(s.ExpiresAt) {
				s.ExpiresAt = end
			}
		}
		if id != nil {
			s.Claims = oidc.MarshalClaims(id.Claims)
		}
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// commit applies change and releases the lease, rereading and retrying when
// an unrelated write (an idle-timeout touch) got in between. It gives up if
// the lease is no longer holder's: the session was logged out or the lease
// expired and another replica took over.
func (m *Manager) commit(ctx context.Context, key session.Key, holder string, change func(*session.Session)) (*session.Loaded, error) {
	sessions := m.o.Sessions
	for {
		l, err := sessions.Fresh(ctx, key)
		if errors.Is(err, session.ErrNoSession) {
			return nil, ErrSessionEnded
		}
		if err != nil {
			return nil, err
		}
		if l.Lease.Holder != holder {
			return nil, fmt.Errorf("%w: refresh lease lost", oidc.ErrUnavailable)
		}
		change(&l.Session)
		l.Lease = session.Lease{}
		err = sessions.Save(ctx, l)
		if errors.Is(err, session.ErrConflict) {
			continue
		}
		if errors.Is(err, session.ErrNoSession) {
			return nil, ErrSessionEnded
		}
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

func (m *Manager) end(ctx context.Context, l *session.Loaded, why string, attrs ...any) {
	m.o.Logger.Info("session ended", append([]any{"audit", true, "event", "session_ended", "session", l.Key.Short(), "sub", l.Subject, "reason", why}, attrs...)...)
	if err := m.o.Sessions.Delete(ctx, nil, l.Key); err != nil {
		m.o.Logger.Warn("deleting an ended session", "session", l.Key.Short(), "error", err)
	}
}

// usable reports whether t may be handed out: fresh and not stale.
func usable(t session.Tokens, now time.Time, skew time.Duration, stale string) bool {
	return t.Fresh(now, skew) && (stale == "" || t.AccessToken != stale)
}

func newHolder() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

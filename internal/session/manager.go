package session

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// CookieName is the session cookie. The __Host-Http- prefix
// (draft-ietf-oauth-browser-based-apps-27 §6.1.3.2, layered-cookies) makes
// browsers insist on Secure, Path=/, no Domain and HttpOnly, so neither a
// sibling subdomain nor script can plant or overwrite it; browsers that do
// not know the Http part still apply the __Host- rules.
const CookieName = "__Host-Http-moat"

// ErrNoSession means the request carries no usable session: no cookie, a
// malformed one, an unknown, expired or unreadable record. It is a 401.
var ErrNoSession = errors.New("session: no session")

// Loaded is a session read from the store, with what is needed to write it
// back by compare-and-swap.
type Loaded struct {
	Key     Key
	Version uint64
	Session

	memo *claimsMemo // shared by the copies the cache hands out
	key  *keyMemo    // likewise
}

// Manager moves sessions between the cookie, the codec and the store. It is
// safe for concurrent use. Frontend returns a view of it for one of several
// frontends; the views share the store, the key ring and the cache.
type Manager struct {
	*shared
	frontend string // "" for the one frontend of a single-frontend config
	cookie   string // the cookie's name
	domain   string // the KeyOf domain of this frontend's session keys
}

type shared struct {
	store    Store
	codec    atomic.Pointer[Codec] // swapped by a key-ring reload
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
	log      *slog.Logger
	cache    *cache
	loads    singleflight.Group // cache misses, by key
	inv      Invalidator        // nil: the cache is only bounded by its TTL
	window   time.Duration      // see SyncWindow
	active   atomic.Int64       // wall clock (ns) of the last cached lookup, for the heartbeat
	keys     keyGate
	marked   atomic.Pointer[marked] // the last key-check marker written
}

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Store           Store
	Codec           *Codec
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	Now             func() time.Time // time.Now when nil
	Logger          *slog.Logger
	// CacheTTL bounds how long a decoded session is reused without
	// rereading the store, and so how long another replica's logout may
	// take to be seen here. CacheSize bounds the entries. Zero disables.
	CacheTTL  time.Duration
	CacheSize int
	// WatchContext, when set and the store is an Invalidator, makes the
	// cache coherent: changes made by other replicas drop cached sessions
	// at once, and a cached session is served only after Sync has proven
	// that no invalidation is pending. Cancelling it stops the watch.
	WatchContext context.Context
	// Invalidator is the store's, when Store wraps it (metrics, tracing);
	// nil means Store itself if it is one.
	Invalidator Invalidator
	// SyncWindow is DefaultSyncWindow when zero; see there. Every replica
	// of a deployment must use the same.
	SyncWindow time.Duration
	// KeysPending says the codec's keys have not been proven against the
	// store (CheckKeys could not reach it). Until they are, a record that
	// does not open is an outage, not a logout, and no session is created.
	KeysPending bool
}

// NewManager returns a Manager.
func NewManager(o ManagerOptions) *Manager {
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Manager{shared: &shared{store: o.Store, idle: o.IdleTimeout, absolute: o.AbsoluteTimeout, now: o.Now, log: o.Logger,
		cache: newCache(o.CacheTTL, o.CacheSize)}, cookie: CookieName, domain: sessionDomain}
	m.codec.Store(o.Codec)
	m.keys.ok.Store(!o.KeysPending)
	inv := o.Invalidator
	if inv == nil {
		inv, _ = o.Store.(Invalidator)
	}
	if inv != nil && m.cache != nil && o.WatchContext != nil {
		m.inv, m.window = inv, cmp.Or(o.SyncWindow, DefaultSyncWindow)
		inv.Watch(o.WatchContext, m.cache.drop, m.cache.flush)
		go m.heartbeat(o.WatchContext)
	}
	return m
}

// Frontend returns the view of m for the frontend named name (config
// frontends[].name; "" is m itself). Its sessions are isolated from every
// other frontend's: its cookie has a name of its own, its session keys are
// derived in a domain of their own (so a session ID of another frontend
// names no session here), a session it loads from a cookie must carry its
// name, and its subject and sid indexes are its own, so that a back-channel
// logout for one OIDC client ends none of another's sessions.
func (m *Manager) Frontend(name string) *Manager {
	if name == "" {
		return m
	}
	return &Manager{shared: m.shared, frontend: name, cookie: CookieName + "-" + name, domain: sessionDomain + "/" + name}
}

// FrontendName returns the name of the frontend m serves; "" for the
// single frontend of a configuration without frontends.
func (m *Manager) FrontendName() string { return m.frontend }

// CookieName returns the name of the session cookie of m's frontend.
func (m *Manager) CookieName() string { return m.cookie }

// Key returns the store key of id for m's frontend.
func (m *Manager) Key(id ID) Key { return KeyOf(m.domain, id[:]) }

// indexOf is what a session record of frontend is indexed under for a sub
// or sid: the value itself for the single frontend, else prefixed with the
// frontend's name, which never holds "|". The same sub from two issuers, or
// two clients of one, then names two sets of sessions.
func indexOf(frontend, v string) string {
	if frontend == "" || v == "" {
		return v
	}
	return frontend + "|" + v
}

// DefaultSyncWindow: with an Invalidator, a replica serves a cached session
// without a round trip of its own while its invalidation channel has
// completed one (Invalidator.Synced) that started less than this long
// before the request; and every write that other replicas must see at
// once (an ending, a change) waits a little longer than this after the
// store has done it, before it returns. So a request that arrives after
// the write's answer needs a round trip sent after the write, which
// delivered its invalidation. The heartbeat keeps such a round trip
// recent while sessions are being served from the cache, so a cached hit
// costs no round trip; this replaces one round trip per cached hit, which
// blocked every request (docs/performance.md). It relies on durations
// only, measured on each replica's monotonic clock, not on synchronised
// clocks.
const DefaultSyncWindow = 40 * time.Millisecond

// heartbeat runs a Sync every fifth of the window while the cache is in
// use (it was looked up in the last second), so that Synced stays within
// the window.
func (m *Manager) heartbeat(ctx context.Context) {
	t := time.NewTicker(m.window / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.UnixNano()-m.active.Load() < int64(time.Second) {
				_ = m.inv.Sync(ctx, time.Now()) // a failure is Sync's callers' to see
			}
		}
	}
}

// coherent reports whether the cache may serve a request that arrived
// now, after the caller found its session there. Without an invalidator
// the TTL bounds the cache; with one, a round trip must have started
// within the window (see DefaultSyncWindow) or be made now; if the
// channel is down, the cache is bypassed until it is back.
func (m *Manager) coherent(ctx context.Context) bool {
	if m.inv == nil {
		return true
	}
	now := time.Now()
	if ns := now.UnixNano(); ns-m.active.Load() > int64(m.window/5) {
		m.active.Store(ns) // not on every request: the line is shared
	}
	if now.Sub(m.inv.Synced()) < m.window {
		return true
	}
	// The same rule: a round trip that started within the window, which
	// may be the one on the wire.
	return m.inv.Sync(ctx, now.Add(-m.window)) == nil
}

// fence is called after a write that other replicas must see at once,
// whether the store reported it done or not (a lost reply may hide a
// write that happened): it waits until no replica can serve a copy cached
// before the write without a round trip sent after it (see
// DefaultSyncWindow). The margin covers monotonic clocks running at
// slightly different rates (NTP slews by at most 500 ppm).
func (m *Manager) fence() {
	if m.inv != nil {
		time.Sleep(m.window + m.window/10 + time.Millisecond)
	}
}

// Store returns the underlying store.
func (m *Manager) Store() Store { return m.store }

// Codec returns the codec records are sealed with.
func (m *Manager) Codec() *Codec { return m.codec.Load() }

// SetCodec replaces the key ring, for a configuration reload.
// keysPending is as in ManagerOptions.
func (m *Manager) SetCodec(c *Codec, keysPending bool) {
	m.keys.mu.Lock()
	defer m.keys.mu.Unlock()
	m.codec.Store(c)
	m.keys.ok.Store(!keysPending)
	m.keys.err, m.keys.next = nil, time.Time{} // the last check was of other keys
}

// Now returns the manager's clock reading.
func (m *Manager) Now() time.Time { return m.now() }

// IdleTimeout returns the configured idle timeout.
func (m *Manager) IdleTimeout() time.Duration { return m.idle }

// Load returns the session named by r's cookie. The ID is read from the
// cookie only, never from a query, header or body. It returns ErrNoSession
// or an error wrapping ErrUnavailable.
func (m *Manager) Load(ctx context.Context, r *http.Request) (*Loaded, error) {
	return m.LoadAt(ctx, r, m.now())
}

// LoadAt is Load at now, a reading of the manager's clock (Now) the caller
// has already taken for this request.
func (m *Manager) LoadAt(ctx context.Context, r *http.Request, now time.Time) (*Loaded, error) {
	c, err := r.Cookie(m.cookie)
	if err != nil {
		return nil, ErrNoSession
	}
	id, err := ParseID(c.Value)
	if err != nil {
		return nil, ErrNoSession
	}
	l, err := m.loadKey(ctx, m.Key(id), now)
	if err == nil && l.Frontend != m.frontend {
		// Not reachable while keys are derived per frontend; kept so that
		// a session of another frontend never authenticates here.
		return nil, ErrNoSession
	}
	return l, err
}

// LoadKey returns the session stored under key; see Load.
func (m *Manager) LoadKey(ctx context.Context, key Key) (*Loaded, error) {
	return m.loadKey(ctx, key, m.now())
}

func (m *Manager) loadKey(ctx context.Context, key Key, now time.Time) (*Loaded, error) {
	// With an invalidator, a cached session is served only once every
	// invalidation sent before this request has arrived.
	if m.cache.has(key) && m.coherent(ctx) {
		if l, ok := m.cache.get(key, now); ok && now.Before(l.Deadline(m.idle)) {
			return l, nil
		}
	}
	// Past its deadline in the cache: another replica may have slid it,
	// so only the store decides. Concurrent misses on one session share
	// one store read: when a busy session's cache entry expires, its
	// requests in flight would otherwise all read and unseal the same
	// record at once. The read is detached from the first caller's
	// cancellation (the store bounds it); each caller gets its own copy.
	ch := m.loads.DoChan(string(key), func() (any, error) {
		return m.fetch(context.WithoutCancel(ctx), key)
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		l := res.Val.(*Loaded)
		if res.Shared {
			c := *l
			l = &c
		}
		return l, nil
	}
}

// Fresh is LoadKey bypassing the cache, for decisions that must see other
// replicas' writes at once (the refresh lease).
func (m *Manager) Fresh(ctx context.Context, key Key) (*Loaded, error) { return m.fetch(ctx, key) }

func (m *Manager) fetch(ctx context.Context, key Key) (*Loaded, error) {
	m.cache.forget(key)
	t := m.cache.begin(key)
	l, err := m.fetchRecord(ctx, key)
	if err != nil {
		m.cache.end(key, t)
		return nil, err
	}
	// Not if the session was dropped while it was read (a logout on this
	// replica, an invalidation from another): it would come back to life.
	m.cache.put(l, m.now(), t)
	return l, nil
}

func (m *Manager) fetchRecord(ctx context.Context, key Key) (*Loaded, error) {
	rec, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l, err := m.open(key, rec)
	if err != nil {
		if kerr := m.VerifyKeys(ctx); kerr != nil {
			return nil, kerr // perhaps the wrong keys, not a bad record
		}
		m.log.Warn("unreadable session record treated as no session", "session", key.Short(), "error", err)
		return nil, ErrNoSession
	}
	now := m.now()
	if !now.Before(l.Deadline(m.idle)) {
		if err := m.store.Delete(ctx, key); err != nil {
			m.log.Warn("deleting expired session", "session", key.Short(), "error", err)
		}
		return nil, ErrNoSession
	}
	return l, nil
}

// Decode opens a record read directly from the store (admin views).
func (m *Manager) Decode(key Key, rec Record) (*Loaded, error) { return m.open(key, rec) }

func (m *Manager) open(key Key, rec Record) (*Loaded, error) {
	plain, err := m.codec.Load().Open(key, rec.Data)
	if err != nil {
		return nil, err
	}
	l := &Loaded{Key: key, Version: rec.Version}
	if err := json.Unmarshal(plain, &l.Session); err != nil {
		return nil, fmt.Errorf("decoding session: %w", err)
	}
	l.memo = &claimsMemo{raw: l.Claims}
	l.key = &keyMemo{raw: l.DPoP}
	return l, nil
}

// Create stores s under a fresh ID (session IDs rotate at every login, so
// an ID planted before login never authenticates) and sets the cookie.
func (m *Manager) Create(ctx context.Context, w http.ResponseWriter, s Session) (*Loaded, error) {
	if err := m.VerifyKeys(ctx); err != nil {
		return nil, err
	}
	now := m.now()
	s.CreatedAt, s.LastSeen = now, now
	if s.ExpiresAt.IsZero() || s.ExpiresAt.After(now.Add(m.absolute)) {
		s.ExpiresAt = now.Add(m.absolute)
	}
	s.Frontend = m.frontend
	id := NewID()
	l := &Loaded{Key: m.Key(id), Session: s}
	l.key = &keyMemo{raw: l.DPoP}
	v, err := m.store.Set(ctx, l.Key, m.record(l), l.Deadline(m.idle).Sub(now))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.Version = v
	m.cache.put(l, now, m.cache.begin(l.Key)) // a fresh key: nobody can have dropped it
	m.markKeys(ctx, now)
	http.SetCookie(w, &http.Cookie{
		Name: m.cookie, Value: id.Encode(), Path: "/",
		Expires: s.ExpiresAt, MaxAge: int(s.ExpiresAt.Sub(now).Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	return l, nil
}

// Save writes l back if nobody else changed it since it was loaded, and
// updates l.Version. It returns ErrConflict when somebody did and
// ErrNoSession when the session is gone or past its deadline.
func (m *Manager) Save(ctx context.Context, l *Loaded) error { return m.save(ctx, l, true) }

// save is Save; fenced says whether other replicas must see the write at
// once (see fence).
func (m *Manager) save(ctx context.Context, l *Loaded, fenced bool) error {
	now := m.now()
	ttl := l.Deadline(m.idle).Sub(now)
	if ttl <= 0 {
		return ErrNoSession
	}
	t := m.cache.begin(l.Key)
	v, err := m.store.CompareAndSwap(ctx, l.Key, l.Version, m.record(l), ttl)
	if fenced && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) { // those wrote nothing
		m.fence()
	}
	switch {
	case errors.Is(err, ErrConflict):
		m.cache.end(l.Key, t)
		m.cache.drop(l.Key) // somebody else wrote: the next read must see it
		return ErrConflict
	case errors.Is(err, ErrNotFound):
		m.cache.end(l.Key, t)
		m.cache.drop(l.Key)
		return ErrNoSession
	case err != nil:
		m.cache.end(l.Key, t)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.Version = v
	// Not if a logout dropped it meanwhile: the swap won, then the delete
	// did, and the session is gone.
	m.cache.put(l, now, t)
	return nil
}

// Touch slides the idle deadline. To spare the store a write per request,
// it writes only when a twentieth of the idle timeout has passed since the
// last write; a lost race is harmless, the winner wrote a fresh LastSeen.
func (m *Manager) Touch(ctx context.Context, l *Loaded) { m.TouchAt(ctx, l, m.now()) }

// TouchAt is Touch at now, a reading of the manager's clock (Now) the
// caller has already taken for this request.
func (m *Manager) TouchAt(ctx context.Context, l *Loaded, now time.Time) {
	if now.Sub(l.LastSeen) < m.idle/20 {
		return
	}
	prev := l.LastSeen
	l.LastSeen = now
	// Not fenced: a replica that serves a copy with an older LastSeen only
	// thinks the session idle sooner, and rereads it.
	if err := m.save(ctx, l, false); err != nil && !errors.Is(err, ErrConflict) {
		l.LastSeen = prev
		m.log.Debug("sliding the idle timeout", "session", l.Key.Short(), "error", err)
	}
}

// Delete removes the session from the store and then, if w is given,
// expires the cookie.
func (m *Manager) Delete(ctx context.Context, w http.ResponseWriter, key Key) error {
	m.cache.drop(key)
	// Dropped again once the store has deleted it: a read or write that
	// started between the first drop and the delete must not cache what it
	// saw before the delete.
	defer m.cache.drop(key)
	err := m.store.Delete(ctx, key)
	m.fence()
	if err != nil {
		// The cookie stays: the browser can retry the logout once the
		// store is back, instead of losing the cookie to a live session.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if w != nil {
		m.ClearCookie(w)
	}
	return nil
}

// DeleteBy ends every session of m's frontend with sub and/or sid
// (back-channel logout, the admin API) and returns their keys.
func (m *Manager) DeleteBy(ctx context.Context, sub, sid string) ([]Key, error) {
	m.cache.dropMatching(m.frontend, sub, sid)
	defer m.cache.dropMatching(m.frontend, sub, sid) // as in Delete
	keys, err := m.store.DeleteBy(ctx, indexOf(m.frontend, sub), indexOf(m.frontend, sid))
	m.fence()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return keys, nil
}

// ListBySubject returns the live sessions of sub at m's frontend, for the
// admin API.
func (m *Manager) ListBySubject(ctx context.Context, sub string) (map[Key]Record, error) {
	return m.store.ListBySubject(ctx, indexOf(m.frontend, sub))
}

// ClearCookie expires the session cookie of a single-frontend moat; see
// Manager.ClearCookie.
func ClearCookie(w http.ResponseWriter) { clearCookie(w, CookieName) }

// ClearCookie expires the session cookie of m's frontend with the
// attributes it was set with, which the __Host- prefix requires for the
// deletion to take.
func (m *Manager) ClearCookie(w http.ResponseWriter) { clearCookie(w, m.cookie) }

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

func (m *Manager) record(l *Loaded) Record {
	plain, err := json.Marshal(&l.Session)
	if err != nil {
		panic(fmt.Sprintf("session: encoding a Session cannot fail: %v", err))
	}
	return Record{Data: m.codec.Load().Seal(l.Key, plain), Subject: indexOf(l.Frontend, l.Subject), SID: indexOf(l.Frontend, l.SID)}
}

// Seal encodes and seals v for key, for records that are not sessions
// (login transactions).
func (m *Manager) Seal(key Key, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return m.codec.Load().Seal(key, plain), nil
}

// Open is the inverse of Seal.
func (m *Manager) Open(key Key, data []byte, v any) error {
	plain, err := m.codec.Load().Open(key, data)
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrWrongKeys means none of the configured keys opens what the store holds:
// starting anyway would log out every user, so moat refuses to start.
var ErrWrongKeys = errors.New("session: none of the configured keys opens the sessions in the store")

var keyCheckKey = KeyOf("keycheck", []byte("v1"))

const keyCheckPlain = "moat session key check"

// CheckKeys proves the codec can open the store's sessions before moat
// serves anyone. It reads, never writes: the proof is a small marker record
// that the session manager seals with its first key when it creates a
// session (MarkKeys), with a lifetime that outlasts every session sealed
// before it. So a store where no session can be live (a fresh one, or one a
// test run with a throwaway key touched long enough ago) passes with any
// key, and one with live sessions passes only with a key that opens them.
// A store that cannot be reached is reported as ErrUnavailable.
func CheckKeys(ctx context.Context, store Store, codec *Codec) error {
	rec, err := store.Get(ctx, keyCheckKey)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	plain, err := codec.Open(keyCheckKey, rec.Data)
	if err != nil || string(plain) != keyCheckPlain {
		return ErrWrongKeys
	}
	return nil
}

// MarkKeys writes the key-check marker, sealed with the codec's first key,
// for ttl: at least as long as any session sealed so far may live. Sealing
// with the first key makes the check follow key rotation: add the new key
// second everywhere, then move it first, then drop the old one.
func MarkKeys(ctx context.Context, store Store, codec *Codec, ttl time.Duration) error {
	_, err := store.Set(ctx, keyCheckKey, Record{Data: codec.Seal(keyCheckKey, []byte(keyCheckPlain))}, ttl)
	return err
}

// ForgetKeys removes the key-check marker, so that moat starts with keys
// that cannot open the sessions in the store: those users are logged out.
// It is the recovery for a store whose sessions nobody needs.
func ForgetKeys(ctx context.Context, store Store) error {
	return store.Delete(ctx, keyCheckKey)
}

// markEvery spaces the marker writes of one Manager: at most one per
// interval (and one per key ring), so logins cost no extra write.
const markEvery = time.Minute

type marked struct {
	codec *Codec
	at    time.Time
}

// markKeys refreshes the marker after a session was created at now. The
// marker lives absolute + 2*markEvery: longer than every session created
// before the next refresh.
func (m *Manager) markKeys(ctx context.Context, now time.Time) {
	codec := m.codec.Load()
	if last := m.marked.Load(); last != nil && last.codec == codec && now.Sub(last.at) < markEvery && !now.Before(last.at) {
		return
	}
	m.marked.Store(&marked{codec: codec, at: now})
	if err := MarkKeys(ctx, m.store, codec, m.absolute+2*markEvery); err != nil {
		m.marked.Store(nil) // try again at the next login
		m.log.Warn("could not write the session key-check marker; retrying at the next login", "error", err)
	}
}

// keyGate holds a Manager's key check: done at startup when the store
// answers, and otherwise by VerifyKeys once it does.
type keyGate struct {
	ok   atomic.Bool
	mu   sync.Mutex
	err  error     // the last failed check's
	next time.Time // no check again before, after a failure
}

// keyRecheck spaces key checks after a failure: a store that is down, or
// wrong keys, would otherwise cost a store round trip per request.
const keyRecheck = time.Second

// VerifyKeys returns nil once the codec's keys have been proven against
// the store (CheckKeys), checking them if that could not be done at
// startup. While it cannot be done it returns an error wrapping
// ErrUnavailable, and ErrWrongKeys as well when the keys are wrong: moat
// then answers 503 rather than treating every session as gone (a silent
// logout of every user) or sealing new ones nobody else can read.
func (m *Manager) VerifyKeys(ctx context.Context) error {
	if m.keys.ok.Load() {
		return nil
	}
	m.keys.mu.Lock()
	defer m.keys.mu.Unlock()
	if m.keys.ok.Load() {
		return nil
	}
	if time.Now().Before(m.keys.next) {
		return m.keys.err
	}
	err := CheckKeys(ctx, m.store, m.codec.Load())
	switch {
	case err == nil:
		m.keys.ok.Store(true)
		m.log.Info("session keys checked against the store")
		return nil
	case errors.Is(err, ErrWrongKeys):
		m.log.Error("none of the configured session keys opens the sessions in the store; " +
			"answering 503 rather than logging everybody out: configure the key in use and reload")
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m.keys.err, m.keys.next = err, time.Now().Add(keyRecheck)
	return err
}

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

// CheckKeys proves the codec can open the store's records before moat
// serves anyone, using a small canary record sealed with the newest key in
// use. When the canary opens, it is resealed with the codec's first key, so
// the check follows key rotation: add the new key second everywhere, then
// move it first, then drop the old one. A store that cannot be reached is
// reported as ErrUnavailable and checked again at the next start.
func CheckKeys(ctx context.Context, store Store, codec *Codec) error {
	rec, err := store.Get(ctx, keyCheckKey)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	default:
		plain, err := codec.Open(keyCheckKey, rec.Data)
		if err != nil || string(plain) != keyCheckPlain {
			return ErrWrongKeys
		}
	}
	data := codec.Seal(keyCheckKey, []byte(keyCheckPlain))
	if _, err := store.Set(ctx, keyCheckKey, Record{Data: data}, 10*365*24*time.Hour); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
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

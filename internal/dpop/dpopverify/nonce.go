package dpopverify

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// Nonces are server-provided nonces (RFC 9449 §8, §9): one current value,
// handed out as DPoP-Nonce, and the one before it, still accepted so that
// a client racing a rotation is not refused twice.
type Nonces struct {
	period time.Duration
	now    func() time.Time

	mu        sync.Mutex
	current   string
	previous  string
	rotatedAt time.Time
}

// NewNonces returns nonces that rotate every period (never when period is
// zero) by the clock now (time.Now when nil).
func NewNonces(period time.Duration, now func() time.Time) *Nonces {
	if now == nil {
		now = time.Now
	}
	n := &Nonces{period: period, now: now}
	n.current, n.rotatedAt = newNonce(), now()
	return n
}

// Current is the nonce to send in DPoP-Nonce.
func (n *Nonces) Current() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tick()
	return n.current
}

// Valid reports whether nonce is the current or the previous one.
func (n *Nonces) Valid(nonce string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tick()
	ok := subtle.ConstantTimeCompare([]byte(nonce), []byte(n.current)) == 1
	if n.previous != "" && subtle.ConstantTimeCompare([]byte(nonce), []byte(n.previous)) == 1 {
		ok = true
	}
	return nonce != "" && ok
}

// Rotate makes a new current nonce now; the current one becomes previous.
func (n *Nonces) Rotate() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rotate()
}

func (n *Nonces) tick() {
	if n.period <= 0 {
		return
	}
	now := n.now()
	if now.Sub(n.rotatedAt) >= 2*n.period {
		n.rotate() // both values are too old
		n.previous = ""
	} else if now.Sub(n.rotatedAt) >= n.period {
		n.rotate()
	}
}

func (n *Nonces) rotate() {
	n.previous, n.current, n.rotatedAt = n.current, newNonce(), n.now()
}

func newNonce() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

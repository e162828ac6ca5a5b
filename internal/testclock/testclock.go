// Package testclock is the clock tests hand to code that takes a
// now func() time.Time (token expiry, refresh skew, session and cache
// lifetimes): it stands still until the test moves it, so that expiry is
// tested without sleeping, and it is safe for concurrent use.
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable clock; use New.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a Clock reading t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; pass c.Now where a now func is taken.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

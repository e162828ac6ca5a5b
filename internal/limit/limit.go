// Package limit is a set of token buckets keyed by client IP or session,
// bounded in size so that no stream of new keys grows memory without end:
// when full, the least recently used bucket is forgotten (which can only
// make a limit more lenient for a key not seen in a while).
package limit

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is safe for concurrent use.
type Keyed struct {
	limit rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu    sync.Mutex
	items map[string]*list.Element
	order *list.List // front: most recently used
}

type entry struct {
	key string
	lim *rate.Limiter
}

// New returns buckets of r tokens per second and burst, tracking at most
// maxKeys keys. now is the clock; time.Now when nil.
func New(r float64, burst, maxKeys int, now func() time.Time) *Keyed {
	if now == nil {
		now = time.Now
	}
	return &Keyed{limit: rate.Limit(r), burst: burst, max: maxKeys, now: now,
		items: make(map[string]*list.Element), order: list.New()}
}

// Allow takes a token from key's bucket. When it is empty it returns false
// and how long until a token is available, for Retry-After.
func (k *Keyed) Allow(key string) (bool, time.Duration) { return k.AllowAt(key, k.now()) }

// AllowAt is Allow at now, a reading of the Keyed's clock the caller has
// already taken (a clock read is a noticeable part of a proxy hop).
func (k *Keyed) AllowAt(key string, now time.Time) (bool, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lim *rate.Limiter
	if el, ok := k.items[key]; ok {
		k.order.MoveToFront(el)
		lim = el.Value.(*entry).lim
	} else {
		if k.order.Len() >= k.max {
			oldest := k.order.Back()
			k.order.Remove(oldest)
			delete(k.items, oldest.Value.(*entry).key)
		}
		lim = rate.NewLimiter(k.limit, k.burst)
		k.items[key] = k.order.PushFront(&entry{key: key, lim: lim})
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	wait := time.Second
	if k.limit > 0 {
		wait = time.Duration(math.Ceil(float64(time.Second) / float64(k.limit)))
	}
	return false, wait
}

// Len returns how many keys are tracked.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.order.Len()
}

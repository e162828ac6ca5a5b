package dpopverify

import (
	"container/heap"
	"crypto/sha256"
	"sync"
	"time"
)

// replayCache remembers each accepted proof (its key's thumbprint and jti)
// until its iat leaves the window. It holds at most max proofs: when full,
// it forgets the proof with the oldest iat, and refuses a proof not newer
// than the oldest it holds. A forgotten proof is never newer than that, so
// it cannot come back until it is stale.
type replayCache struct {
	max int

	mu    sync.Mutex
	seen  map[[32]byte]struct{}
	order byIAT
}

type entry struct {
	id  [32]byte
	iat time.Time
}

type byIAT []entry

func (h byIAT) Len() int           { return len(h) }
func (h byIAT) Less(i, j int) bool { return h[i].iat.Before(h[j].iat) }
func (h byIAT) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *byIAT) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *byIAT) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: map[[32]byte]struct{}{}}
}

// add records a proof and reports whether it is new.
func (c *replayCache) add(jkt, jti string, iat time.Time, window time.Duration, now time.Time) bool {
	id := sha256.Sum256([]byte(jkt + "\x00" + jti))
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && c.order[0].iat.Add(window).Before(now) {
		delete(c.seen, heap.Pop(&c.order).(entry).id)
	}
	if _, ok := c.seen[id]; ok {
		return false
	}
	if len(c.order) >= c.max {
		if !iat.After(c.order[0].iat) {
			return false // it would be the first forgotten
		}
		delete(c.seen, heap.Pop(&c.order).(entry).id)
	}
	c.seen[id] = struct{}{}
	heap.Push(&c.order, entry{id, iat})
	return true
}

package session

import (
	"container/list"
	"sync"
	"time"
)

// cache keeps recently used sessions decoded, so a busy session costs one
// store read and one unseal per TTL rather than per request. Writes made
// through the Manager update it; writes made by other replicas become
// visible within the TTL, which bounds how long a logout on one replica
// can take to reach the others. It holds at most size entries.
type cache struct {
	ttl  time.Duration
	size int

	mu      sync.Mutex
	entries map[Key]*list.Element
	lru     *list.List // front: most recently used
}

type cacheEntry struct {
	l       Loaded
	fetched time.Time
}

func newCache(ttl time.Duration, size int) *cache {
	if ttl <= 0 || size <= 0 {
		return nil
	}
	return &cache{ttl: ttl, size: size, entries: map[Key]*list.Element{}, lru: list.New()}
}

// get returns a copy of key's session if it was fetched within the TTL.
func (c *cache) get(key Key, now time.Time) (*Loaded, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if now.Sub(e.fetched) >= c.ttl {
		c.lru.Remove(el)
		delete(c.entries, key)
		return nil, false
	}
	c.lru.MoveToFront(el)
	l := e.l
	return &l, true
}

// put stores a copy of l as fetched at now.
func (c *cache) put(l *Loaded, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[l.Key]; ok {
		el.Value = &cacheEntry{l: *l, fetched: now}
		c.lru.MoveToFront(el)
		return
	}
	c.entries[l.Key] = c.lru.PushFront(&cacheEntry{l: *l, fetched: now})
	// Trim what is stale or over capacity, starting at the least recently
	// used end, so idle sessions do not stay decoded in memory.
	for el := c.lru.Back(); el != nil; el = c.lru.Back() {
		e := el.Value.(*cacheEntry)
		if c.lru.Len() <= c.size && now.Sub(e.fetched) < c.ttl {
			break
		}
		c.lru.Remove(el)
		delete(c.entries, e.l.Key)
	}
}

func (c *cache) drop(key Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.Remove(el)
		delete(c.entries, key)
	}
}

// dropMatching forgets sessions of sub (if given) and sid (if given).
func (c *cache) dropMatching(sub, sid string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, el := range c.entries {
		e := el.Value.(*cacheEntry)
		if (sub == "" || e.l.Subject == sub) && (sid == "" || e.l.SID == sid) {
			c.lru.Remove(el)
			delete(c.entries, key)
		}
	}
}

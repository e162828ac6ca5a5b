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
// can take to reach the others. It holds at most size entries. A drop
// also keeps out the result of any read or write of that session still in
// flight (begin/put), so a logout is never undone on this replica by a
// read that fetched the session just before it.
type cache struct {
	ttl  time.Duration
	size int

	mu      sync.Mutex
	entries map[Key]*list.Element
	lru     *list.List // front: most recently used
	// Store operations in flight whose result may be cached (reads, and the
	// manager's own writes), so that a drop during one keeps its result
	// out: a read that fetched a session just before a logout deleted it
	// must not put it back afterwards. epoch counts the drops that cannot
	// name a key (by subject or SID, flushes); marks count a key's drops.
	epoch uint64
	marks map[Key]*mark
}

// mark counts the drops of one key while operations on it are in flight.
type mark struct {
	refs    int
	dropped uint64
}

// ticket is what begin hands out and put checks: the drop counts when the
// operation started.
type ticket struct {
	m       *mark
	dropped uint64
	epoch   uint64
}

type cacheEntry struct {
	l       Loaded
	fetched time.Time
}

func newCache(ttl time.Duration, size int) *cache {
	if ttl <= 0 || size <= 0 {
		return nil
	}
	return &cache{ttl: ttl, size: size, entries: map[Key]*list.Element{}, lru: list.New(), marks: map[Key]*mark{}}
}

// begin is called before a store operation whose result put may cache;
// every begin must be followed by exactly one put or end with its ticket.
func (c *cache) begin(key Key) ticket {
	if c == nil {
		return ticket{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.marks[key]
	if m == nil {
		m = &mark{}
		c.marks[key] = m
	}
	m.refs++
	return ticket{m: m, dropped: m.dropped, epoch: c.epoch}
}

// end releases t without caching anything.
func (c *cache) end(key Key, t ticket) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.release(key, t)
}

// release must be called with c.mu held. It reports whether nothing was
// dropped since t was handed out.
func (c *cache) release(key Key, t ticket) bool {
	clean := t.m.dropped == t.dropped && t.epoch == c.epoch
	if t.m.refs--; t.m.refs == 0 {
		delete(c.marks, key)
	}
	return clean
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

// put stores a copy of l as fetched at now, unless l.Key was dropped
// since t was handed out by begin: then what l says may be older than the
// drop, and it is not cached. put releases t.
func (c *cache) put(l *Loaded, now time.Time, t ticket) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.release(l.Key, t) {
		return
	}
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

// drop forgets key's session, and keeps results of operations in flight
// on it out of the cache.
func (c *cache) drop(key Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.marks[key]; m != nil {
		m.dropped++
	}
	if el, ok := c.entries[key]; ok {
		c.lru.Remove(el)
		delete(c.entries, key)
	}
}

// dropMatching forgets frontend's sessions of sub (if given) and sid (if
// given).
func (c *cache) dropMatching(frontend, sub, sid string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++ // a read in flight does not know its subject yet
	for key, el := range c.entries {
		e := el.Value.(*cacheEntry)
		if e.l.Frontend == frontend && (sub == "" || e.l.Subject == sub) && (sid == "" || e.l.SID == sid) {
			c.lru.Remove(el)
			delete(c.entries, key)
		}
	}
}

// flush forgets every session and keeps every operation in flight out of
// the cache.
func (c *cache) flush() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.entries)
	c.lru.Init()
}

// forget removes key's entry without counting it as a drop: the caller is
// about to reread it.
func (c *cache) forget(key Key) {
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

// has reports whether key has an entry, fresh or not.
func (c *cache) has(key Key) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[key]
	return ok
}

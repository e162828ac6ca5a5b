// Package memory is a session.Store that keeps its records in process memory.
// It suits a single replica and development, and is the reference the other
// backends are compared with; records do not survive a restart and are not
// shared between replicas.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// DefaultSweepInterval is how often expired records are purged when
// Options.SweepInterval is not set. Expired records are invisible from the
// moment they expire (every access checks); the sweeper only gives their
// memory back, so it need not run often.
const DefaultSweepInterval = time.Minute

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Now returns the current time; nil means time.Now. Tests inject a clock
	// here to expire records without sleeping.
	Now func() time.Time
	// SweepInterval is the period of the background sweeper; zero or
	// negative means DefaultSweepInterval.
	SweepInterval time.Duration
	// MaxRecords bounds the store, so no stream of logins from many
	// addresses can grow memory without end: a write that would create a
	// record beyond it fails with ErrUnavailable (a 503). Zero means
	// DefaultMaxRecords.
	MaxRecords int
}

// DefaultMaxRecords is about 2 GiB of typical sessions.
const DefaultMaxRecords = 1_000_000

// Store is an in-memory session.Store. Create it with New and release it with
// Close, which stops its sweeper goroutine.
type Store struct {
	now func() time.Time
	max int

	mu      sync.RWMutex
	closed  bool
	version uint64 // last version handed out; unique per store, so no ABA after delete and re-create
	records map[session.Key]entry
	// Secondary indexes, so DeleteBy and ListBySubject touch only matching
	// records. Only records with a Subject are indexed: the others are not
	// sessions and DeleteBy never matches them.
	bySubject map[string]map[session.Key]struct{}
	bySID     map[string]map[session.Key]struct{}

	closeOnce sync.Once
	stop      chan struct{} // closed by Close to stop the sweeper
	done      chan struct{} // closed by the sweeper when it has returned
}

// entry is a stored record. rec.Data is owned by the store and never
// modified in place: a write replaces the slice, so readers may copy it
// after releasing the lock.
type entry struct {
	rec     session.Record
	expires time.Time
}

func (e entry) live(now time.Time) bool { return now.Before(e.expires) }

var _ session.Store = (*Store)(nil)

// New returns an empty Store and starts its sweeper goroutine; call Close to
// stop it.
func New(opts Options) *Store {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	interval := opts.SweepInterval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	s := &Store{
		now:       now,
		max:       opts.MaxRecords,
		records:   make(map[session.Key]entry),
		bySubject: make(map[string]map[session.Key]struct{}),
		bySID:     make(map[string]map[session.Key]struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go s.sweepLoop(interval)
	return s
}

// Get returns the live record under key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key session.Key) (session.Record, error) {
	if err := ctx.Err(); err != nil {
		return session.Record{}, fmt.Errorf("memory: get %s: %w", key.Short(), err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return session.Record{}, closedError("get")
	}
	e, ok := s.records[key]
	live := ok && e.live(s.now())
	s.mu.RUnlock()
	if !live {
		return session.Record{}, fmt.Errorf("memory: get %s: %w", key.Short(), session.ErrNotFound)
	}
	return clone(e.rec), nil
}

// Set writes r under key unconditionally and returns its new version.
func (s *Store) Set(ctx context.Context, key session.Key, r session.Record, ttl time.Duration) (uint64, error) {
	if err := checkWrite(ctx, "set", key, ttl); err != nil {
		return 0, err
	}
	r.Data = bytes.Clone(r.Data) // outside the lock: records can be large
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, closedError("set")
	}
	now := s.now()
	if e, ok := s.records[key]; ok {
		s.remove(key, e)
	} else if err := s.full("set"); err != nil {
		return 0, err
	}
	return s.put(key, r, now.Add(ttl)), nil
}

// full reports an error when one more record would exceed the bound.
func (s *Store) full(op string) error {
	if len(s.records) < s.max {
		return nil
	}
	return fmt.Errorf("memory: %s: store holds its maximum of %d records: %w", op, s.max, session.ErrUnavailable)
}

// CompareAndSwap writes r under key only if the live record's version is
// old, or, with old == 0, only if no record is live.
func (s *Store) CompareAndSwap(ctx context.Context, key session.Key, old uint64, r session.Record, ttl time.Duration) (uint64, error) {
	if err := checkWrite(ctx, "compare-and-swap", key, ttl); err != nil {
		return 0, err
	}
	r.Data = bytes.Clone(r.Data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, closedError("compare-and-swap")
	}
	now := s.now()
	e, ok := s.records[key]
	if ok && !e.live(now) {
		s.remove(key, e)
		ok = false
	}
	switch {
	case !ok && old != 0:
		return 0, fmt.Errorf("memory: compare-and-swap %s: %w", key.Short(), session.ErrNotFound)
	case ok && e.rec.Version != old: // includes old == 0 with a live record
		return 0, fmt.Errorf("memory: compare-and-swap %s: version %d, want %d: %w", key.Short(), e.rec.Version, old, session.ErrConflict)
	}
	if ok {
		s.remove(key, e)
	} else if err := s.full("compare-and-swap"); err != nil {
		return 0, err
	}
	return s.put(key, r, now.Add(ttl)), nil
}

// Take returns the live record under key and deletes it under the same lock,
// so of concurrent callers exactly one gets it.
func (s *Store) Take(ctx context.Context, key session.Key) (session.Record, error) {
	if err := ctx.Err(); err != nil {
		return session.Record{}, fmt.Errorf("memory: take %s: %w", key.Short(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return session.Record{}, closedError("take")
	}
	e, ok := s.records[key]
	if !ok {
		return session.Record{}, fmt.Errorf("memory: take %s: %w", key.Short(), session.ErrNotFound)
	}
	s.remove(key, e)
	if !e.live(s.now()) {
		return session.Record{}, fmt.Errorf("memory: take %s: %w", key.Short(), session.ErrNotFound)
	}
	return e.rec, nil // the store no longer refers to e.rec.Data: no copy needed
}

// Delete removes the record under key; a missing record is not an error.
func (s *Store) Delete(ctx context.Context, key session.Key) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: delete %s: %w", key.Short(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closedError("delete")
	}
	if e, ok := s.records[key]; ok {
		s.remove(key, e)
	}
	return nil
}

// DeleteBy removes the live records matching sub and sid (either may be
// empty, not both) and returns how many it removed. It visits only the
// records the smaller applicable index names.
func (s *Store) DeleteBy(ctx context.Context, sub, sid string) ([]session.Key, error) {
	if sub == "" && sid == "" {
		return nil, fmt.Errorf("memory: delete by: %w", session.ErrEmptySelector)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: delete by: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, closedError("delete by")
	}
	var candidates map[session.Key]struct{}
	switch {
	case sub == "":
		candidates = s.bySID[sid]
	case sid == "":
		candidates = s.bySubject[sub]
	default:
		candidates = s.bySubject[sub]
		if bySID := s.bySID[sid]; len(bySID) < len(candidates) {
			candidates = bySID
		}
	}
	now := s.now()
	var removed []session.Key
	for key := range candidates { // remove deletes from candidates: allowed while ranging
		e := s.records[key]
		if (sub != "" && e.rec.Subject != sub) || (sid != "" && e.rec.SID != sid) {
			continue
		}
		if e.live(now) {
			removed = append(removed, key)
		}
		s.remove(key, e) // expired ones too: they are garbage anyway
	}
	return removed, nil
}

// ListBySubject returns sub's live records, read through the subject index.
// An empty sub lists nothing: records without a Subject are not sessions.
func (s *Store) ListBySubject(ctx context.Context, sub string) (map[session.Key]session.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list by subject: %w", err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, closedError("list by subject")
	}
	now := s.now()
	out := make(map[session.Key]session.Record, len(s.bySubject[sub]))
	for key := range s.bySubject[sub] {
		if e := s.records[key]; e.live(now) {
			out[key] = e.rec // Data copied below, outside the lock
		}
	}
	s.mu.RUnlock()
	for key, r := range out {
		out[key] = clone(r)
	}
	return out, nil
}

// Ping reports ErrUnavailable once the store is closed, nil before.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: ping: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return closedError("ping")
	}
	return nil
}

// Close stops the sweeper, waits for it to return and drops every record.
// It is idempotent; afterwards every operation fails with ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		s.closed = true
		s.records, s.bySubject, s.bySID = nil, nil, nil
		s.mu.Unlock()
	})
	return nil
}

// Len returns the number of records held, live or expired but not yet swept,
// for metrics.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.records)
}

func (s *Store) sweepLoop(interval time.Duration) {
	defer close(s.done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
			s.sweep()
		}
	}
}

// sweep removes every expired record. It holds the write lock for one pass
// over the map, which is acceptable for the sizes a single replica holds.
func (s *Store) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := s.now()
	for key, e := range s.records {
		if !e.live(now) {
			s.remove(key, e)
		}
	}
}

// put stores r (whose Data the caller has already copied) under key with a
// fresh version, indexes it and returns the version. Any previous entry must
// have been removed. s.mu must be held for writing.
func (s *Store) put(key session.Key, r session.Record, expires time.Time) uint64 {
	s.version++
	r.Version = s.version
	s.records[key] = entry{rec: r, expires: expires}
	if r.Subject != "" {
		addIndex(s.bySubject, r.Subject, key)
		if r.SID != "" {
			addIndex(s.bySID, r.SID, key)
		}
	}
	return r.Version
}

// remove deletes key's entry e and its index entries. s.mu must be held for
// writing.
func (s *Store) remove(key session.Key, e entry) {
	delete(s.records, key)
	if e.rec.Subject != "" {
		dropIndex(s.bySubject, e.rec.Subject, key)
		if e.rec.SID != "" {
			dropIndex(s.bySID, e.rec.SID, key)
		}
	}
}

func addIndex(index map[string]map[session.Key]struct{}, value string, key session.Key) {
	keys := index[value]
	if keys == nil {
		keys = make(map[session.Key]struct{})
		index[value] = keys
	}
	keys[key] = struct{}{}
}

// dropIndex removes key from index[value], and index[value] itself once
// empty so the index does not grow with every subject ever seen.
func dropIndex(index map[string]map[session.Key]struct{}, value string, key session.Key) {
	keys := index[value]
	delete(keys, key)
	if len(keys) == 0 {
		delete(index, value)
	}
}

// checkWrite rejects a cancelled ctx and a ttl that would keep a record
// forever or not at all.
func checkWrite(ctx context.Context, op string, key session.Key, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s %s: %w", op, key.Short(), err)
	}
	if ttl <= 0 {
		return fmt.Errorf("memory: %s %s: ttl %v is not positive", op, key.Short(), ttl)
	}
	return nil
}

func closedError(op string) error {
	return fmt.Errorf("memory: %s: store is closed: %w", op, session.ErrUnavailable)
}

// clone returns r with its own copy of Data, so the caller cannot modify the
// stored bytes.
func clone(r session.Record) session.Record {
	r.Data = bytes.Clone(r.Data)
	return r
}

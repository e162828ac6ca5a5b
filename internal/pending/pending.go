// Package pending bounds the login transactions in flight, per replica and
// per store, so that a flood of /auth/login from many addresses cannot grow
// memory or the session store without end, while the per-IP login limit can
// stay generous enough for an office behind one NAT address.
//
// Per replica the count is exact for what this replica knows: transactions
// it started that have neither expired nor been completed here (one
// completed on another replica counts until it expires). Per store the count
// is an upper bound kept in the store itself: logins started in the last
// login timeout, in ten time buckets, each a small counter record updated
// by compare-and-swap. Completions are not subtracted there; the bound
// errs on the side of counting too many.
package pending

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// ErrFull is returned by Admit when a cap is reached; errors.As to *Full for
// the scope.
var ErrFull = errors.New("pending: too many logins in flight")

// Full says which cap was reached.
type Full struct{ Scope string } // "replica" or "store"

func (f *Full) Error() string { return fmt.Sprintf("%v (%s cap)", ErrFull, f.Scope) }
func (f *Full) Unwrap() error { return ErrFull }

// buckets is how many time buckets span one login timeout.
const buckets = 10

// casTries bounds compare-and-swap retries on a store bucket: more
// conflicts than this mean a flood of logins, and the answer is "busy".
const casTries = 8

// Options configures a Cap.
type Options struct {
	PerReplica int           // at most this many transactions started here and live
	PerStore   int           // at most this many started in the store per timeout
	Timeout    time.Duration // how long a login transaction lives
	Store      session.Store
	Now        func() time.Time
	OnFull     func(scope string) // observes each refusal (a metric); may be nil
}

// Cap is safe for concurrent use.
type Cap struct {
	o Options

	mu    sync.Mutex
	live  map[session.Key]time.Time // this replica's transactions, by expiry
	order []entry                   // the same, oldest first, with completed ones left in until they expire

	closedMu  sync.Mutex // never held across a store call
	closedFor int64      // the bucket whose predecessors closedSum counts
	closedAt  time.Time
	closedSum int64
	flight    *flight // the reread in progress, if any
}

type entry struct {
	key session.Key
	exp time.Time
}

// New returns a Cap.
func New(o Options) *Cap {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnFull == nil {
		o.OnFull = func(string) {}
	}
	return &Cap{o: o, live: map[session.Key]time.Time{}}
}

// Pending returns how many transactions this replica started that are live.
func (c *Cap) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(c.o.Now())
	return len(c.live)
}

// Admit counts a new transaction under key, or returns a *Full (or a store
// error) when it must not be started. Call Done when the transaction is
// taken, or when it could not be stored after all.
func (c *Cap) Admit(ctx context.Context, key session.Key) error {
	now := c.o.Now()
	c.mu.Lock()
	c.expire(now)
	if len(c.live) >= c.o.PerReplica {
		c.mu.Unlock()
		return c.full(&Full{Scope: "replica"})
	}
	exp := now.Add(c.o.Timeout)
	c.live[key] = exp
	c.order = append(c.order, entry{key, exp})
	c.mu.Unlock()
	if err := c.admitStore(ctx, now); err != nil {
		c.Done(key)
		return c.full(err)
	}
	return nil
}

func (c *Cap) full(err error) error {
	var f *Full
	if errors.As(err, &f) {
		c.o.OnFull(f.Scope)
	}
	return err
}

// Done removes a transaction that was taken (or never stored).
func (c *Cap) Done(key session.Key) {
	c.mu.Lock()
	delete(c.live, key)
	c.mu.Unlock()
}

// expire drops expired transactions and compacts order; c.mu is held.
func (c *Cap) expire(now time.Time) {
	i := 0
	for i < len(c.order) && !now.Before(c.order[i].exp) {
		if exp, ok := c.live[c.order[i].key]; ok && exp == c.order[i].exp {
			delete(c.live, c.order[i].key)
		}
		i++
	}
	c.order = c.order[i:]
	// Completed transactions stay in order until they expire; keep it
	// within twice the live ones (plus slack) so it cannot grow unbounded.
	if len(c.order) > 2*len(c.live)+64 {
		kept := c.order[:0]
		for _, e := range c.order {
			if exp, ok := c.live[e.key]; ok && exp == e.exp {
				kept = append(kept, e)
			}
		}
		clear(c.order[len(kept):])
		c.order = kept
	}
}

func (c *Cap) width() time.Duration { return max(c.o.Timeout/buckets, time.Second) }

func bucketKey(b int64) session.Key {
	return session.KeyOf("login-count", strconv.AppendInt(nil, b, 10))
}

// admitStore increments the current bucket unless the window's total has
// reached PerStore.
func (c *Cap) admitStore(ctx context.Context, now time.Time) error {
	w := c.width()
	cur := now.UnixNano() / int64(w)
	closed, err := c.closed(ctx, cur, now)
	if err != nil {
		return err
	}
	for range casTries {
		n, ver, err := c.read(ctx, bucketKey(cur))
		if err != nil {
			return err
		}
		if closed+n >= int64(c.o.PerStore) {
			return &Full{Scope: "store"}
		}
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], uint64(n+1))
		// The bucket lives as long as any transaction it counts.
		_, err = c.o.Store.CompareAndSwap(ctx, bucketKey(cur), ver, session.Record{Data: data[:]}, c.o.Timeout+2*w)
		if errors.Is(err, session.ErrConflict) || errors.Is(err, session.ErrNotFound) {
			continue
		}
		return err
	}
	return &Full{Scope: "store"}
}

// closed returns the counts of the buckets before cur that are still in the
// window, rereading them at most once a second. One caller at a time
// rereads, its reads concurrent and outside closedMu; the others wait for
// its answer or for their own context.
func (c *Cap) closed(ctx context.Context, cur int64, now time.Time) (int64, error) {
	for {
		c.closedMu.Lock()
		if c.closedFor == cur && now.Sub(c.closedAt) < time.Second && now.Sub(c.closedAt) >= 0 {
			sum := c.closedSum
			c.closedMu.Unlock()
			return sum, nil
		}
		if f := c.flight; f != nil {
			c.closedMu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			if f.cur == cur && (f.err == nil || !errors.Is(f.err, context.Canceled)) {
				return f.sum, f.err
			}
			continue // another bucket, or its caller went away: look again
		}
		f := &flight{cur: cur, done: make(chan struct{})}
		c.flight = f
		c.closedMu.Unlock()

		f.sum, f.err = c.sumClosed(ctx, cur)
		c.closedMu.Lock()
		if f.err == nil {
			c.closedFor, c.closedAt, c.closedSum = cur, now, f.sum
		}
		c.flight = nil
		c.closedMu.Unlock()
		close(f.done)
		return f.sum, f.err
	}
}

// flight is one reread of the closed buckets.
type flight struct {
	cur  int64
	done chan struct{}
	sum  int64
	err  error
}

// sumClosed reads the buckets before cur concurrently: one round trip's
// latency on the login path, not ten.
func (c *Cap) sumClosed(ctx context.Context, cur int64) (int64, error) {
	var counts [buckets]int64
	var errs [buckets]error
	var wg sync.WaitGroup
	for i := range buckets {
		wg.Go(func() { counts[i], _, errs[i] = c.read(ctx, bucketKey(cur-buckets+int64(i))) })
	}
	wg.Wait()
	var sum int64
	for i := range buckets {
		if errs[i] != nil {
			return 0, errs[i]
		}
		sum += counts[i]
	}
	return sum, nil
}

// read returns a bucket's count and version (0, 0 when absent).
func (c *Cap) read(ctx context.Context, key session.Key) (int64, uint64, error) {
	rec, err := c.o.Store.Get(ctx, key)
	if errors.Is(err, session.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if len(rec.Data) != 8 {
		return 0, rec.Version, nil // not ours to read; overwritten
	}
	return int64(binary.BigEndian.Uint64(rec.Data)), rec.Version, nil
}

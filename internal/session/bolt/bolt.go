// Package bolt is a session.Store in one embedded bbolt file. It is the
// default for a single persistent moat node: sessions survive a restart
// without any service to run. bbolt locks the file, so only one process can
// use it at a time; it does not suit several replicas.
//
// The file holds five buckets:
//
//	meta        schema -> "1"
//	records     key -> envelope (see envelope.go)
//	by_subject  len32(subject) subject key -> empty
//	by_sid      len32(sid) sid key -> empty
//	by_expiry   biased64(expiry) key -> empty
//
// Index entries are written in the same transaction as their record. The
// length prefix makes a subject's entries one unambiguous key prefix, even
// for subjects that contain any byte. Like the memory store, only records
// with a Subject are indexed by subject and SID; every record is indexed by
// expiry, which lets the sweeper find expired records without reading the
// live ones. Versions come from the records bucket's sequence, which is
// committed with the record and so never handed out twice, even across a
// restart.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/moat-bff/moat/internal/session"
)

// DefaultSweepInterval is the sweeper's period when Options.SweepInterval is
// not set. Expired records are invisible from the moment they expire (every
// read checks); the sweeper only gives their space back.
const DefaultSweepInterval = time.Minute

// DefaultOpenTimeout is how long Open waits for the file lock when
// Options.OpenTimeout is not set: long enough for a restarting moat to let
// go of the file, short enough to fail a misconfigured second one quickly.
const DefaultOpenTimeout = 2 * time.Second

// sweepBatch is the most expired records one sweep transaction removes, so
// that a sweep after a long downtime never holds the write lock for long.
const sweepBatch = 256

var (
	bucketMeta      = []byte("meta")
	bucketRecords   = []byte("records")
	bucketBySubject = []byte("by_subject")
	bucketBySID     = []byte("by_sid")
	bucketByExpiry  = []byte("by_expiry")

	keySchema     = []byte("schema")
	schemaVersion = []byte("1")
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Logger receives warnings about corrupted records and failed sweeps;
	// nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests inject a clock
	// here to expire records without sleeping.
	Now func() time.Time
	// SweepInterval is the period of the background sweeper; zero or
	// negative means DefaultSweepInterval.
	SweepInterval time.Duration
	// OpenTimeout bounds the wait for the file lock held by another
	// process; zero or negative means DefaultOpenTimeout. A shorter ctx
	// deadline given to Open wins.
	OpenTimeout time.Duration
	// ReadOnly opens the file for reading only (moat check): nothing is
	// created or swept, and a missing file is an error wrapping
	// session.ErrNotCreated. bbolt takes a shared lock, so while a moat
	// serves from the file Open waits OpenTimeout and fails with ErrInUse.
	ReadOnly bool
}

// ErrInUse means another process (a running moat) holds the file.
var ErrInUse = errors.New("bolt: the file is locked by another process")

// Store is a session.Store in a bbolt file. Create it with Open and release
// it with Close, which stops its sweeper and unlocks the file.
type Store struct {
	db   *bbolt.DB
	path string
	log  *slog.Logger
	now  func() time.Time

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{} // closed by Close to stop the sweeper
	done      chan struct{} // closed by the sweeper when it has returned
}

var _ session.Store = (*Store)(nil)

// urlForm is the one accepted spelling, quoted in every URL error.
const urlForm = "bolt:///absolute/path/to/sessions.db"

// ParseURL returns the file path named by rawURL, which must have the form
// bolt:///absolute/path/to/sessions.db. Relative paths are rejected: they
// would depend on the working directory, and a moat started from another
// one would silently open an empty store and log everybody out. It lets
// configuration be checked without opening the file.
func ParseURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	shown := rawURL
	if err == nil && u.User != nil {
		shown = u.Redacted() // a password has no place here, but must not reach a log either
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("bolt: session store URL %q %s; want %s", shown, why, urlForm)
	}
	switch {
	case err != nil: // url.Parse's error quotes the URL: say nothing of it
		return "", fmt.Errorf("bolt: session store URL does not parse; want %s", urlForm)
	case u.Scheme != "bolt":
		return bad("does not start with bolt://")
	case u.Opaque != "" || !strings.HasPrefix(rawURL[len(u.Scheme)+1:], "//"):
		return bad("is not of the form bolt://<path>")
	case u.User != nil || u.Host != "":
		return bad("names a host or a relative path (a path needs three slashes: bolt:///...)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(rawURL, "#"):
		return bad("has a query or fragment, and bolt takes no options")
	case !filepath.IsAbs(u.Path):
		return bad("has no absolute path")
	case strings.HasSuffix(u.Path, "/"):
		return bad("names a directory, not a file")
	}
	return filepath.Clean(u.Path), nil
}

// Open opens or creates the store file named by rawURL (see ParseURL) with
// mode 0600. The directory must exist: creating it would hide a typo in the
// configuration. If another process holds the file, Open fails with an error
// wrapping session.ErrUnavailable after Options.OpenTimeout.
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	path, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist) && o.ReadOnly:
		return nil, fmt.Errorf("bolt: directory %s does not exist yet (the systemd unit's StateDirectory= creates it at the first start; otherwise create it, mode 0700, owned by moat's user): %w", dir, session.ErrNotCreated)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("bolt: open %s: directory %s does not exist; create it (mode 0700, owned by moat's user), moat will not: %w", path, dir, err)
	case err != nil:
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("bolt: open %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("bolt: open %s: is a directory; want %s", path, urlForm)
	} else if errors.Is(err, fs.ErrNotExist) && o.ReadOnly {
		return nil, fmt.Errorf("bolt: %s does not exist yet: %w", path, session.ErrNotCreated)
	}

	timeout := o.OpenTimeout
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left < timeout {
			timeout = max(left, time.Millisecond) // 0 would mean "wait forever"
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      timeout,
		FreelistType: bbolt.FreelistMapType, // faster under the churn of short-lived records
		ReadOnly:     o.ReadOnly,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bolt: open %s: the file is locked by another process (is another moat using it?); gave up after %v: %w: %w: %w",
			path, timeout.Round(time.Millisecond), ErrInUse, session.ErrUnavailable, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("bolt: open %s: not a bbolt file, or a damaged one: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}

	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("bolt: session store file is accessible to other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	if o.ReadOnly {
		err = db.View(func(tx *bbolt.Tx) error {
			if v := tx.Bucket(bucketMeta); v == nil || !bytes.Equal(v.Get(keySchema), schemaVersion) {
				return errors.New("not a moat session store of this version (moat serve creates or migrates it)")
			}
			_, err := bucketsOf(tx)
			return err
		})
	} else {
		err = initBuckets(db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}

	now := o.Now
	if now == nil {
		now = time.Now
	}
	interval := o.SweepInterval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	s := &Store{
		db:   db,
		path: path,
		log:  log,
		now:  now,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if o.ReadOnly {
		close(s.done)
	} else {
		go s.sweepLoop(interval)
	}
	return s, nil
}

// initBuckets creates the buckets of a new file and refuses a file that is
// some other program's bbolt database or a future schema of this one.
func initBuckets(db *bbolt.DB) error {
	return db.Update(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if v := meta.Get(keySchema); !bytes.Equal(v, schemaVersion) {
				return fmt.Errorf("schema %q, this moat reads schema %q", v, schemaVersion)
			}
		} else {
			var foreign []string
			err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
				foreign = append(foreign, string(name))
				return nil
			})
			if err != nil {
				return err
			}
			if len(foreign) > 0 {
				return fmt.Errorf("not a moat session store (it has buckets %q and no schema)", foreign)
			}
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keySchema, schemaVersion); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketRecords, bucketBySubject, bucketBySID, bucketByExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		return nil
	})
}

// Get returns the live record under key, or ErrNotFound. It runs in a read
// transaction, so it never waits for writers.
func (s *Store) Get(ctx context.Context, key session.Key) (session.Record, error) {
	const op = "get"
	if err := s.check(ctx, op, key); err != nil {
		return session.Record{}, err
	}
	now := s.now().UnixNano()
	var (
		e     envelope
		found bool
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		// Only the records bucket: each bucket looked up costs allocations.
		records := tx.Bucket(bucketRecords)
		if records == nil {
			return errMissingBucket
		}
		e, found = s.load(buckets{records: records}, op, key, true)
		return nil
	})
	if err != nil {
		return session.Record{}, s.unavailable(op, key, err)
	}
	if !found || !e.live(now) {
		return session.Record{}, notFound(op, key)
	}
	return e.record(), nil
}

// Set writes r under key unconditionally and returns its new version.
func (s *Store) Set(ctx context.Context, key session.Key, r session.Record, ttl time.Duration) (uint64, error) {
	const op = "set"
	if err := s.checkWrite(ctx, op, key, r, ttl); err != nil {
		return 0, err
	}
	buf := newEnvelope(r)
	var version uint64
	err := s.update(ctx, op, key, func(b buckets) error {
		if old, ok := s.load(b, op, key, false); ok {
			if err := b.remove(key, old); err != nil {
				return err
			}
		}
		var err error
		version, err = b.put(key, buf, r, expiryAt(s.now().UnixNano(), int64(ttl)))
		return err
	})
	return version, err
}

// CompareAndSwap writes r under key only if the live record's version is
// old, or, with old == 0, only if no record is live.
func (s *Store) CompareAndSwap(ctx context.Context, key session.Key, old uint64, r session.Record, ttl time.Duration) (uint64, error) {
	const op = "compare-and-swap"
	if err := s.checkWrite(ctx, op, key, r, ttl); err != nil {
		return 0, err
	}
	buf := newEnvelope(r)
	var version uint64
	err := s.update(ctx, op, key, func(b buckets) error {
		now := s.now().UnixNano()
		cur, ok := s.load(b, op, key, false)
		if ok && !cur.live(now) {
			if err := b.remove(key, cur); err != nil { // garbage: drop it while we hold the lock
				return err
			}
			ok = false
		}
		switch {
		case !ok && old != 0:
			return notFound(op, key)
		case ok && cur.version != old: // includes old == 0 with a live record
			return fmt.Errorf("bolt: %s %s: version %d, want %d: %w", op, key.Short(), cur.version, old, session.ErrConflict)
		case ok:
			if err := b.remove(key, cur); err != nil {
				return err
			}
		}
		var err error
		version, err = b.put(key, buf, r, expiryAt(now, int64(ttl)))
		return err
	})
	return version, err
}

// Take returns the live record under key and deletes it in the same write
// transaction, so of concurrent callers exactly one gets it. An expired or
// corrupted record is reported as ErrNotFound and left to the sweeper.
func (s *Store) Take(ctx context.Context, key session.Key) (session.Record, error) {
	const op = "take"
	if err := s.check(ctx, op, key); err != nil {
		return session.Record{}, err
	}
	var e envelope
	err := s.update(ctx, op, key, func(b buckets) error {
		var ok bool
		e, ok = s.load(b, op, key, true)
		if !ok || !e.live(s.now().UnixNano()) {
			return notFound(op, key) // rolls back: nothing to commit
		}
		return b.remove(key, e)
	})
	if err != nil {
		// Including a failed commit: the record is still stored, so it
		// must not be handed out.
		return session.Record{}, err
	}
	return e.record(), nil
}

// Delete removes the record under key; a missing record is not an error.
func (s *Store) Delete(ctx context.Context, key session.Key) error {
	const op = "delete"
	if err := s.check(ctx, op, key); err != nil {
		return err
	}
	return s.update(ctx, op, key, func(b buckets) error {
		if e, ok := s.load(b, op, key, false); ok {
			return b.remove(key, e)
		}
		if !exists(b.records, key) {
			return errNoChange // spare the commit and its fsync
		}
		return b.records.Delete([]byte(key)) // a corrupted value
	})
}

// DeleteBy removes the live session records matching sub and sid (either may
// be empty, not both) in one transaction and returns how many it removed. It
// reads only the records one index names: the SID index when a sid is
// given, as a SID has few sessions, else the subject index.
func (s *Store) DeleteBy(ctx context.Context, sub, sid string) ([]session.Key, error) {
	const op = "delete by"
	if sub == "" && sid == "" {
		return nil, fmt.Errorf("bolt: %s: %w", op, session.ErrEmptySelector)
	}
	if err := s.check(ctx, op, ""); err != nil {
		return nil, err
	}
	var removed []session.Key
	err := s.update(ctx, op, "", func(b buckets) error {
		removed = removed[:0]
		changed := false
		index, value, bySID := b.bySubject, sub, false
		if sid != "" {
			index, value, bySID = b.bySID, sid, true
		}
		entries, keys := scanIndex(index, value)
		now := s.now().UnixNano()
		for i, key := range keys {
			e, ok := s.load(b, op, key, false)
			if !ok || !e.indexedUnder(bySID, value) {
				// Left behind by a corrupted record: drop the entry.
				if err := index.Delete(entries[i]); err != nil {
					return err
				}
				changed = true
				continue
			}
			if (sub != "" && e.subject != sub) || (sid != "" && e.sid != sid) {
				continue
			}
			if e.live(now) {
				removed = append(removed, key)
			}
			if err := b.remove(key, e); err != nil { // expired ones too: garbage anyway
				return err
			}
			changed = true
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// ListBySubject returns sub's live records, read through the subject index
// in one read transaction. An empty sub lists nothing: records without a
// Subject are not sessions.
func (s *Store) ListBySubject(ctx context.Context, sub string) (map[session.Key]session.Record, error) {
	const op = "list by subject"
	if err := s.check(ctx, op, ""); err != nil {
		return nil, err
	}
	out := map[session.Key]session.Record{}
	if sub == "" {
		return out, nil
	}
	now := s.now().UnixNano()
	err := s.db.View(func(tx *bbolt.Tx) error {
		b, err := bucketsOf(tx)
		if err != nil {
			return err
		}
		_, keys := scanIndex(b.bySubject, sub)
		for _, key := range keys {
			if e, ok := s.load(b, op, key, true); ok && e.subject == sub && e.live(now) {
				out[key] = e.record()
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.unavailable(op, "", err)
	}
	return out, nil
}

// Ping reports whether the file is open and its buckets readable, for
// /readyz.
func (s *Store) Ping(ctx context.Context) error {
	const op = "ping"
	if err := s.check(ctx, op, ""); err != nil {
		return err
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		_, err := bucketsOf(tx)
		return err
	})
	if err != nil {
		return s.unavailable(op, "", err)
	}
	return nil
}

// Close stops the sweeper, waits for it, and closes the file, which waits
// for transactions in flight and releases the lock. It is idempotent and
// safe to call concurrently; afterwards every method returns ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("bolt: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
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

// sweep removes every record expired by now, sweepBatch at a time, and
// gives the write lock up between batches. It stops early when Close is
// called.
func (s *Store) sweep() {
	total := 0
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		n, more, err := s.sweepOnce(s.now().UnixNano())
		total += n
		if err != nil {
			s.log.Warn("bolt: sweeping expired sessions failed", "path", s.path, "err", err)
			return
		}
		if !more {
			break
		}
	}
	if total > 0 {
		s.log.Debug("bolt: swept expired sessions", "path", s.path, "removed", total)
	}
}

// sweepOnce removes up to sweepBatch records whose expiry index entry is
// not after now, and reports whether more are due.
func (s *Store) sweepOnce(now int64) (removed int, more bool, err error) {
	err = s.db.Update(func(tx *bbolt.Tx) error {
		removed, more = 0, false
		b, err := bucketsOf(tx)
		if err != nil {
			return err
		}
		var due [][]byte
		c := b.byExpiry.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if exp, _, ok := splitExpiryKey(k); ok && now < exp {
				break
			}
			if len(due) == sweepBatch {
				more = true
				break
			}
			due = append(due, bytes.Clone(k)) // k is only valid until the bucket changes
		}
		if len(due) == 0 {
			return errNoChange
		}
		for _, k := range due {
			if err := b.byExpiry.Delete(k); err != nil {
				return err
			}
			exp, key, ok := splitExpiryKey(k)
			if !ok {
				continue // a malformed entry: gone now
			}
			if !exists(b.records, key) {
				continue
			}
			e, err := decodeEnvelope(b.records.Get([]byte(key)), false)
			if err != nil {
				// Invisible to every read already; reclaim its space.
				s.corrupt("sweep", key, err)
				if err := b.records.Delete([]byte(key)); err != nil {
					return err
				}
				removed++
				continue
			}
			if e.expires != exp {
				continue // a stale entry (the record's old one was lost with a corrupted value)
			}
			if err := b.remove(key, e); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.unavailable("sweep", "", err)
	}
	return removed, more, nil
}

// buckets are the data buckets of one transaction.
type buckets struct {
	records, bySubject, bySID, byExpiry *bbolt.Bucket
}

func bucketsOf(tx *bbolt.Tx) (buckets, error) {
	b := buckets{
		records:   tx.Bucket(bucketRecords),
		bySubject: tx.Bucket(bucketBySubject),
		bySID:     tx.Bucket(bucketBySID),
		byExpiry:  tx.Bucket(bucketByExpiry),
	}
	if b.records == nil || b.bySubject == nil || b.bySID == nil || b.byExpiry == nil {
		return buckets{}, errMissingBucket
	}
	return b, nil
}

// errMissingBucket means the file was damaged or changed behind moat's back:
// Open creates every bucket.
var errMissingBucket = errors.New("a bucket is missing from the file")

// load decodes the record under key. A corrupted value is logged and
// reported as absent, like a missing one.
func (s *Store) load(b buckets, op string, key session.Key, withData bool) (envelope, bool) {
	raw := b.records.Get([]byte(key))
	if raw == nil {
		return envelope{}, false
	}
	e, err := decodeEnvelope(raw, withData)
	if err != nil {
		s.corrupt(op, key, err)
		return envelope{}, false
	}
	return e, true
}

// exists reports whether bucket holds key, even with an empty value, for
// which Get returns nil as for a missing key.
func exists(bucket *bbolt.Bucket, key session.Key) bool {
	k, _ := bucket.Cursor().Seek([]byte(key))
	return k != nil && string(k) == string(key)
}

// put stores the envelope buf, made by newEnvelope from r, under key with
// the next version and the given expiry, and indexes it. Any previous record
// must have been removed.
func (b buckets) put(key session.Key, buf []byte, r session.Record, expires int64) (uint64, error) {
	version, err := b.records.NextSequence()
	if err != nil {
		return 0, err
	}
	seal(buf, version, expires)
	k := []byte(key)
	if err := b.records.Put(k, buf); err != nil {
		return 0, err
	}
	if err := b.byExpiry.Put(expiryKey(expires, k), nil); err != nil {
		return 0, err
	}
	if r.Subject != "" {
		if err := b.bySubject.Put(indexKey(r.Subject, k), nil); err != nil {
			return 0, err
		}
		if r.SID != "" {
			if err := b.bySID.Put(indexKey(r.SID, k), nil); err != nil {
				return 0, err
			}
		}
	}
	return version, nil
}

// remove deletes the record e under key and its index entries.
func (b buckets) remove(key session.Key, e envelope) error {
	k := []byte(key)
	if err := b.records.Delete(k); err != nil {
		return err
	}
	if err := b.byExpiry.Delete(expiryKey(e.expires, k)); err != nil {
		return err
	}
	if e.subject != "" {
		if err := b.bySubject.Delete(indexKey(e.subject, k)); err != nil {
			return err
		}
		if e.sid != "" {
			if err := b.bySID.Delete(indexKey(e.sid, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexedUnder reports whether e has an entry under value in the SID index
// (bySID) or the subject index.
func (e envelope) indexedUnder(bySID bool, value string) bool {
	if e.subject == "" {
		return false
	}
	if bySID {
		return e.sid == value
	}
	return e.subject == value
}

// indexKey returns the subject or SID index entry of key: a 4-byte length,
// the value, the key.
func indexKey(value string, key []byte) []byte {
	b := make([]byte, 0, 4+len(value)+len(key))
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	b = append(b, value...)
	return append(b, key...)
}

// scanIndex returns the entries under value in index and the keys they
// name, copied out of the transaction's memory.
func scanIndex(index *bbolt.Bucket, value string) (entries [][]byte, keys []session.Key) {
	prefix := indexKey(value, nil)
	c := index.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		entries = append(entries, bytes.Clone(k))
		keys = append(keys, session.Key(k[len(prefix):]))
	}
	return entries, keys
}

// expiryKey returns the expiry index entry of key: the expiry with its sign
// bit flipped, so that entries sort by time even before 1970, then the key.
func expiryKey(expires int64, key []byte) []byte {
	b := make([]byte, 0, 8+len(key))
	b = binary.BigEndian.AppendUint64(b, uint64(expires)^(1<<63))
	return append(b, key...)
}

func splitExpiryKey(k []byte) (expires int64, key session.Key, ok bool) {
	if len(k) <= 8 {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), session.Key(k[8:]), true
}

// errNoChange makes a write transaction that changed nothing roll back
// instead of committing, which would cost an fsync for nothing.
var errNoChange = errors.New("no change")

// update runs fn in a write transaction, which commits if fn returns nil
// and rolls back otherwise. ErrNotFound and ErrConflict from fn pass
// through, errNoChange becomes nil, and any other error, from fn or the
// commit, is a backend failure. A ctx cancelled while waiting for the write
// lock aborts before any change.
func (s *Store) update(ctx context.Context, op string, key session.Key, fn func(buckets) error) error {
	var final error
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			final = s.opError(op, key, err)
			return final
		}
		b, err := bucketsOf(tx)
		if err != nil {
			return err
		}
		err = fn(b)
		if errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrConflict) {
			final = err
		}
		return err
	})
	switch {
	case final != nil:
		return final
	case errors.Is(err, errNoChange):
		return nil
	case err != nil:
		return s.unavailable(op, key, err)
	}
	return nil
}

// check rejects a cancelled ctx, then a closed store.
func (s *Store) check(ctx context.Context, op string, key session.Key) error {
	if err := ctx.Err(); err != nil {
		return s.opError(op, key, err)
	}
	if s.closed.Load() {
		return s.opError(op, key, fmt.Errorf("store is closed: %w", session.ErrUnavailable))
	}
	return nil
}

// checkWrite is check plus the limits of a write: a positive ttl, and keys
// and values within bbolt's limits, so that bbolt never fails a write for
// the caller's input and such failures are not mistaken for outages.
func (s *Store) checkWrite(ctx context.Context, op string, key session.Key, r session.Record, ttl time.Duration) error {
	if err := s.check(ctx, op, key); err != nil {
		return err
	}
	var why string
	switch {
	case ttl <= 0:
		why = fmt.Sprintf("ttl %v is not positive", ttl)
	case key == "":
		why = "empty key"
	case 4+len(r.Subject)+len(key) > bbolt.MaxKeySize:
		why = fmt.Sprintf("key and subject of %d bytes are too long to index", len(key)+len(r.Subject))
	case 4+len(r.SID)+len(key) > bbolt.MaxKeySize:
		why = fmt.Sprintf("key and sid of %d bytes are too long to index", len(key)+len(r.SID))
	case int64(headerSize)+int64(len(r.Subject))+int64(len(r.SID))+int64(len(r.Data)) > bbolt.MaxValueSize:
		why = fmt.Sprintf("record of %d bytes is too large", len(r.Data))
	default:
		return nil
	}
	return fmt.Errorf("bolt: %s %s: %s", op, key.Short(), why)
}

// corrupt logs a value that does not decode. Only the key's prefix is
// logged, as everywhere else.
func (s *Store) corrupt(op string, key session.Key, err error) {
	s.log.Warn("bolt: ignoring a corrupted session record", "path", s.path, "op", op, "key", key.Short(), "err", err)
}

func (s *Store) opError(op string, key session.Key, err error) error {
	if key == "" {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return fmt.Errorf("bolt: %s %s: %w", op, key.Short(), err)
}

// unavailable wraps a bbolt failure. After Close, bbolt's "database not
// open" becomes the same closed-store error as every other call gets.
func (s *Store) unavailable(op string, key session.Key, err error) error {
	if s.closed.Load() || errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return s.opError(op, key, fmt.Errorf("store is closed: %w: %w", session.ErrUnavailable, err))
	}
	return s.opError(op, key, fmt.Errorf("%w: %w", session.ErrUnavailable, err))
}

func notFound(op string, key session.Key) error {
	return fmt.Errorf("bolt: %s %s: %w", op, key.Short(), session.ErrNotFound)
}

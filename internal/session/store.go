package session

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the Store contract. Callers branch on them with
// errors.Is; implementations wrap them with %w.
var (
	// ErrNotFound: no live record under the key (never written, deleted or
	// expired).
	ErrNotFound = errors.New("session: not found")
	// ErrConflict: a compare-and-swap lost, because the record changed or
	// (with version 0) because it already exists.
	ErrConflict = errors.New("session: version conflict")
	// ErrUnavailable: the backing service cannot be reached. moat answers 503
	// and logs nobody out.
	ErrUnavailable = errors.New("session: store unavailable")
	// ErrNotCreated: a store opened read-only (moat check) does not exist
	// yet: no bolt file, no PostgreSQL table. moat serve creates it.
	ErrNotCreated = errors.New("session: store not created yet")
)

// Record is what a Store keeps under a Key. Data is sealed by a Codec before
// it gets here: no store ever sees a token or a usable session ID.
type Record struct {
	Data []byte
	// Version is set by the store and changes on every successful write.
	// It is never 0 for a stored record.
	Version uint64
	// Subject and SID index the record for back-channel logout and the admin
	// API (OpenID Connect Back-Channel Logout 1.0 §2.7). Both are empty for
	// records that are not sessions.
	Subject string
	SID     string
}

// Store persists Records with a time to live. Implementations must be safe for
// concurrent use and pass storetest.Run. Further rules:
//   - A ttl must be positive; a store rejects anything else with an error.
//   - Backend failures wrap ErrUnavailable; a cancelled or expired ctx
//     returns the context's error instead (a client gone is not an outage).
//     After Close every method returns ErrUnavailable.
//   - A version is never reused for a key while a caller could still hold
//     it, even across delete and re-create: a store-wide counter or random
//     64-bit values both do. The Version field passed in is ignored.
//   - nil and empty Data are the same value.
type Store interface {
	// Get returns the live record under key, or ErrNotFound.
	Get(ctx context.Context, key Key) (Record, error)

	// Set writes r under key unconditionally, with a new version, and returns
	// that version.
	Set(ctx context.Context, key Key, r Record, ttl time.Duration) (uint64, error)

	// CompareAndSwap writes r under key only if the stored version is old,
	// and returns the new version. With old == 0 it creates the record only
	// if none is live (set-if-absent). It returns ErrConflict when the
	// condition fails and ErrNotFound when old != 0 and no record is live.
	CompareAndSwap(ctx context.Context, key Key, old uint64, r Record, ttl time.Duration) (uint64, error)

	// Take returns the live record under key and deletes it in one atomic
	// step, so that of two concurrent callers only one gets it (single-use
	// login transactions, RFC 9700 §4.7.1). ErrNotFound otherwise.
	Take(ctx context.Context, key Key) (Record, error)

	// Delete removes the record under key. A missing record is not an error.
	Delete(ctx context.Context, key Key) error

	// DeleteBy removes every live session record (one with a non-empty
	// Subject) whose Subject equals sub (when sub is not empty) and whose SID
	// equals sid (when sid is not empty), and returns their keys, for the
	// audit log. Both empty is ErrEmptySelector. A SID may appear under two
	// subjects.
	DeleteBy(ctx context.Context, sub, sid string) ([]Key, error)

	// ListBySubject returns the keys and records of sub's live sessions, for
	// the admin API; none for an empty sub.
	ListBySubject(ctx context.Context, sub string) (map[Key]Record, error)

	// Ping reports whether the backend is reachable, for /readyz.
	Ping(ctx context.Context) error

	// Close releases the store's resources.
	Close() error
}

// ErrEmptySelector is returned by DeleteBy when neither sub nor sid is given:
// that would otherwise mean "everyone".
var ErrEmptySelector = errors.New("session: DeleteBy needs a subject or a sid")

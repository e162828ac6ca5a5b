// Package backend opens the session store named by the session.store
// setting. It is the one place that knows every backend.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/bolt"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/session/postgres"
	redisstore "github.com/moat-bff/moat/internal/session/redis"
)

// backend is how to check and open the stores of one URL scheme.
type backend struct {
	check    func(spec string) error
	open     func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error)
	openRead func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error)
}

// ReadOnlyOpenTimeout is how long OpenReadOnly waits for a bolt file's
// lock: a running moat holds it for as long as it runs.
const ReadOnlyOpenTimeout = 500 * time.Millisecond

// lookup returns the backend spec's scheme names, or an error saying which
// stores there are.
func lookup(spec string) (backend, error) {
	scheme, _, _ := strings.Cut(spec, "://")
	switch strings.ToLower(scheme) {
	case "bolt":
		return backend{
			check: func(spec string) error { _, err := bolt.ParseURL(spec); return err },
			open: func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
				return bolt.Open(ctx, spec, bolt.Options{Logger: log})
			},
			openRead: func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
				return bolt.Open(ctx, spec, bolt.Options{Logger: log, ReadOnly: true, OpenTimeout: ReadOnlyOpenTimeout})
			},
		}, nil
	case "postgres", "postgresql":
		return backend{
			check: postgres.CheckURL,
			open: func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
				return postgres.Open(ctx, spec, postgres.Options{Logger: log})
			},
			openRead: func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
				return postgres.Open(ctx, spec, postgres.Options{Logger: log, ReadOnly: true})
			},
		}, nil
	case "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
		open := func(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
			return redisstore.Open(ctx, spec, redisstore.Options{Logger: log})
		}
		// Opening Redis writes nothing; check only reads.
		return backend{check: redisstore.CheckURL, open: open, openRead: open}, nil
	}
	return backend{}, fmt.Errorf("%q is not a known store; use memory, bolt:///var/lib/moat/sessions.db, redis://host:6379/0 or postgres://user@host/db", Redact(spec))
}

// Open returns the store named by spec: "memory" or a URL whose scheme
// picks the backend (bolt://, redis:// and its TLS, Sentinel and Cluster
// forms, postgres://).
func Open(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
	if spec == "memory" {
		return memory.New(memory.Options{}), nil
	}
	b, err := lookup(spec)
	if err != nil {
		return nil, err
	}
	return b.open(ctx, spec, log)
}

// OpenReadOnly opens the store named by spec for reading only, for moat
// check: nothing is created, migrated, swept or written. A store that does
// not exist yet gives an error wrapping session.ErrNotCreated; a bolt file
// that a running moat holds, one wrapping bolt.ErrInUse after
// ReadOnlyOpenTimeout.
func OpenReadOnly(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
	if spec == "memory" {
		return memory.New(memory.Options{}), nil
	}
	b, err := lookup(spec)
	if err != nil {
		return nil, err
	}
	return b.openRead(ctx, spec, log)
}

// CheckURL reports what is wrong with spec without opening anything: an
// unknown scheme, or the backend's own complaint about its URL.
func CheckURL(spec string) error {
	if spec == "memory" {
		return nil
	}
	b, err := lookup(spec)
	if err != nil {
		return err
	}
	return b.check(spec)
}

// Redact hides a password in a store URL before it reaches a log or an
// error: in its userinfo, or in a password query parameter (pgx reads
// one). A URL that does not parse, or parses as opaque ("u:pw@h"), is
// redacted up to its last "@": nothing says where its password ends, and
// failing open would print it.
func Redact(spec string) string {
	u, err := url.Parse(spec)
	if err != nil || strings.Contains(u.Opaque, "@") {
		i := strings.LastIndexByte(spec, '@')
		if i < 0 {
			return spec
		}
		if scheme, _, ok := strings.Cut(spec, "://"); ok && !strings.Contains(scheme, "@") {
			return scheme + "://REDACTED" + spec[i:]
		}
		return "REDACTED" + spec[i:]
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	if u.User != nil {
		return u.Redacted()
	}
	return u.String()
}

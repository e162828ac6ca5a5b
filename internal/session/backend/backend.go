// Package backend opens the session store named by the session.store
// setting. It is the one place that knows every backend.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/bolt"
	"github.com/moat-bff/moat/internal/session/memory"
	"github.com/moat-bff/moat/internal/session/postgres"
	redisstore "github.com/moat-bff/moat/internal/session/redis"
)

// Open returns the store named by spec: "memory" or a URL whose scheme
// picks the backend (bolt://, redis:// and its TLS, Sentinel and Cluster
// forms, postgres://).
func Open(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
	if spec == "memory" {
		return memory.New(memory.Options{}), nil
	}
	scheme, _, _ := strings.Cut(spec, "://")
	switch strings.ToLower(scheme) {
	case "bolt":
		return bolt.Open(ctx, spec, bolt.Options{Logger: log})
	case "postgres", "postgresql":
		return postgres.Open(ctx, spec, postgres.Options{Logger: log})
	case "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
		return redisstore.Open(ctx, spec, redisstore.Options{Logger: log})
	}
	return nil, fmt.Errorf("%q is not a known store; use memory, bolt:///path/to/sessions.db, redis://… or postgres://…", Redact(spec))
}

// CheckURL reports what is wrong with spec without opening anything: an
// unknown scheme, or the backend's own complaint about its URL.
func CheckURL(spec string) error {
	if spec == "memory" {
		return nil
	}
	scheme, _, _ := strings.Cut(spec, "://")
	switch strings.ToLower(scheme) {
	case "bolt":
		_, err := bolt.ParseURL(spec)
		return err
	case "postgres", "postgresql":
		return postgres.CheckURL(spec)
	case "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
		return redisstore.CheckURL(spec)
	}
	return fmt.Errorf("%q is not a known store; use memory, bolt:///var/lib/moat/sessions.db, redis://host:6379/0 or postgres://user@host/db", Redact(spec))
}

// Redact hides a password in a store URL before it reaches a log or an
// error.
func Redact(spec string) string {
	if u, err := url.Parse(spec); err == nil && u.User != nil {
		return u.Redacted()
	}
	return spec
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/backend"
	"github.com/moat-bff/moat/internal/session/bolt"
	"github.com/moat-bff/moat/internal/session/memory"
)

// openStoreReadOnly opens the session store for moat check without
// changing it. A store that does not exist yet, or a bolt file a running
// moat holds, is no problem: check says so on stdout and carries on with
// an empty in-memory store in its place.
func openStoreReadOnly(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) (session.Store, error) {
	store, err := backend.OpenReadOnly(ctx, cfg.Session.Store, log)
	switch {
	case err == nil:
		return store, nil
	case errors.Is(err, session.ErrNotCreated):
		fmt.Fprintf(stdout, "note: session.store: %v; not checked further\n", err)
	case errors.Is(err, bolt.ErrInUse):
		fmt.Fprintf(stdout, "note: session.store: %s is in use by a running moat, so it was not read; that moat's /readyz reports it\n",
			backend.Redact(cfg.Session.Store))
	default:
		return nil, fmt.Errorf("session.store: %w", err)
	}
	return memory.New(memory.Options{}), nil
}

// reportProblems prints err, one line per problem, and returns errReported.
func reportProblems(stderr io.Writer, path string, err error) error {
	fmt.Fprintf(stderr, "moat: %s has problems:\n", path)
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(stderr, "  - %s\n", line)
	}
	return errReported
}

// migrate is `moat migrate`: it creates the session store (the PostgreSQL
// schema and table, the bolt file) as serve would, and exits.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return onStore(ctx, "migrate", "Creates or migrates the session store named by session.store (PostgreSQL schema and table,\nbolt file), as moat serve does at start, and exits.",
		"session store ready", args, stdout, stderr, func(ctx context.Context, store session.Store) error { return store.Ping(ctx) })
}

// resetKeyCheck is `moat reset-key-check`: it removes the marker that makes
// moat refuse keys which cannot open the sessions in the store. Those
// sessions then end: the recovery when none of them is worth keeping.
func resetKeyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return onStore(ctx, "reset-key-check", "Removes the session key-check marker from session.store, so that moat starts with keys\nthat cannot open the sessions there: those users are logged out. For a store whose sessions\nnobody needs (e.g. one a test run with a throwaway key left behind).",
		"key-check marker removed; moat now starts with any key, and sessions sealed with other keys end", args, stdout, stderr, session.ForgetKeys)
}

// onStore is a store command: it loads --config, opens session.store as
// serve does, runs do on it and prints done.
func onStore(ctx context.Context, name, doc, done string, args []string, stdout, stderr io.Writer, do func(context.Context, session.Store) error) error {
	path, err := configFlag(name, doc, args, stdout, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := backend.Open(ctx, cfg.Session.Store, slog.New(slog.DiscardHandler))
	if err != nil {
		return reportProblems(stderr, path, fmt.Errorf("session.store: %w", err))
	}
	defer store.Close()
	if err := do(ctx, store); err != nil {
		return reportProblems(stderr, path, fmt.Errorf("session.store: %w", err))
	}
	fmt.Fprintf(stdout, "%s: %s\n", backend.Redact(cfg.Session.Store), done)
	return nil
}

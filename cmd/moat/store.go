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
	path, err := configFlag("migrate", "Creates or migrates the session store named by session.store (PostgreSQL schema and table,\nbolt file), as moat serve does at start, and exits.", args, stdout, stderr)
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
	if err := store.Ping(ctx); err != nil {
		return reportProblems(stderr, path, fmt.Errorf("session.store: %w", err))
	}
	fmt.Fprintf(stdout, "%s: session store ready\n", backend.Redact(cfg.Session.Store))
	return nil
}

// resetKeyCheck is `moat reset-key-check`: it removes the marker that makes
// moat refuse keys which cannot open the sessions in the store. Those
// sessions then end: the recovery when none of them is worth keeping.
func resetKeyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("reset-key-check", "Removes the session key-check marker from session.store, so that moat starts with keys\nthat cannot open the sessions there: those users are logged out. For a store whose sessions\nnobody needs (e.g. one a test run with a throwaway key left behind).", args, stdout, stderr)
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
	if err := session.ForgetKeys(ctx, store); err != nil {
		return reportProblems(stderr, path, fmt.Errorf("session.store: %w", err))
	}
	fmt.Fprintf(stdout, "%s: key-check marker removed; moat now starts with any key, and sessions sealed with other keys end\n", backend.Redact(cfg.Session.Store))
	return nil
}

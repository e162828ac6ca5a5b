// Package backend opens the session store named by the session.store
// setting. It is the one place that knows every backend.
package backend

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/memory"
)

// Open returns the store for spec ("memory").
func Open(ctx context.Context, spec string, log *slog.Logger) (session.Store, error) {
	switch spec {
	case "memory":
		return memory.New(memory.Options{}), nil
	}
	return nil, fmt.Errorf("session.store: %q is not a known store", spec)
}

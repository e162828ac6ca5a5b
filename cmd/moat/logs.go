package main

import (
	"log/slog"

	"go.opentelemetry.io/otel"
)

// routeStrayLogs sends what libraries print on their own through log: the
// OpenTelemetry SDK's errors (an unreachable collector) and anything written
// with the standard log package, so that with log.format json every line
// on standard error is JSON. Both hooks are process-wide by nature; only
// the moat command sets them, never an embedder's process.
func routeStrayLogs(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry: could not export traces", "error", err)
	}))
	slog.SetDefault(log) // also redirects the standard log package to log
}

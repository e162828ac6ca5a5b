package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
)

// With log.format json every line moat writes to standard error is JSON,
// the OpenTelemetry exporter's complaints about an unreachable collector
// included, and durations carry their unit.
func TestEveryStderrLineIsJSON(t *testing.T) {
	op := oidctest.New(t, "http://127.0.0.1:4001/auth/callback")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // nobody listens
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	addr, cmd, logs := startProcess(t, func(addr string) string {
		return fmt.Sprintf(`
listen: %q
public_url: "http://127.0.0.1:4001"
oidc: {issuer: %q, client_id: "c", client_secret: "s"}
session: {keys: [%q]}
log: {format: json}
`, addr, op.Issuer, session.NewKey())
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "opentelemetry") {
		if time.Now().After(deadline) {
			t.Fatalf("no exporter error logged:\n%s", logs.String())
		}
		if resp, err := http.Get("http://" + addr + "/auth/checksession"); err == nil {
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	var sawAccess, sawGrace bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not JSON: %s", line)
			continue
		}
		if m["path"] == "/auth/checksession" {
			d, ok := m["duration"].(string)
			if _, err := time.ParseDuration(d); !ok || err != nil {
				t.Errorf("access line duration without a unit: %s", line)
			}
			sawAccess = true
		}
		if m["msg"] == "shutting down" {
			sawGrace = m["grace"] == "30s"
		}
	}
	if !sawAccess || !sawGrace {
		t.Errorf("access line %v, shutdown grace \"30s\" %v:\n%s", sawAccess, sawGrace, logs.String())
	}
}

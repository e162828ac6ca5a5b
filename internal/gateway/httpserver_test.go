package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
)

// The listeners beside moat's own (admin, forward-auth) get the same
// timeouts and limits as the main one, in plain HTTP/1.1, and no TLS
// setting can make building them fail: cmd/moat has no error to handle.
func TestInternalHTTPServer(t *testing.T) {
	cfg := &config.Config{}
	cfg.Server.ReadHeaderTimeout = config.Duration(7 * time.Second)
	cfg.Server.MaxHeaderBytes = 12345
	cfg.Server.TLSCertFile, cfg.Server.TLSKeyFile = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	cfg.Server.H2C = true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := gateway.NewHTTPServer(cfg, http.NotFoundHandler(), log); err == nil {
		t.Fatal("NewHTTPServer accepted a missing certificate")
	}
	srv := gateway.NewInternalHTTPServer(cfg, http.NotFoundHandler(), log)
	if srv.TLSConfig != nil || srv.Protocols == nil || !srv.Protocols.HTTP1() || srv.Protocols.HTTP2() || srv.Protocols.UnencryptedHTTP2() {
		t.Errorf("not plain HTTP/1.1: TLS %v, protocols %v", srv.TLSConfig, srv.Protocols)
	}
	if srv.ReadHeaderTimeout != cfg.Server.ReadHeaderTimeout.D() || srv.MaxHeaderBytes != 12345 || srv.ConnState == nil {
		t.Errorf("limits not applied: %+v", srv)
	}
}

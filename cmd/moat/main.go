// Command moat runs the moat Backend-for-Frontend.
//
//	moat serve   --config moat.yaml   run the gateway
//	moat check   --config moat.yaml   validate the config and reach the IdP
//	moat keygen                       print a fresh session key
//	moat version                      print version information
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/moat-bff/moat"
	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/session"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "moat:", err)
		}
		os.Exit(1)
	}
}

// errReported means the command already told the user what went wrong.
var errReported = errors.New("reported")

const usage = `usage: moat <command> [flags]

commands:
  serve   --config FILE   run the gateway (FILE also from MOAT_CONFIG)
  check   --config FILE   validate the config and reach the IdP and store
  keygen                  print a fresh base64 session key
  version                 print version information
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errReported
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "check":
		return check(ctx, args[1:], stdout, stderr)
	case "keygen":
		fmt.Fprintln(stdout, session.NewKey())
		return nil
	case "version":
		fmt.Fprintln(stdout, version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "moat: unknown command %q\n\n%s", args[0], usage)
	return errReported
}

func configFlag(name string, args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet("moat "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("MOAT_CONFIG"), "configuration file (default $MOAT_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return "", errReported
	}
	if *path == "" {
		fmt.Fprintf(stderr, "moat %s: --config FILE (or MOAT_CONFIG) is required\n", name)
		return "", errReported
	}
	return *path, nil
}

// loadConfig loads the file and prints every problem, one per line.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "moat: %s is not valid:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		return nil, errReported
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	path, err := configFlag("serve", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	gw, err := moat.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer gw.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("moat listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "version", version())
	if h := gw.AdminHandler(); h != nil {
		aln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		log.Info("admin API listening", "addr", aln.Addr().String())
		errc := make(chan error, 1)
		go func() { errc <- Serve(ctx, aln, gateway.NewHTTPServer(cfg, h, log), log) }()
		defer func() { <-errc }()
	}
	return Serve(ctx, ln, gateway.NewHTTPServer(cfg, gw, log), log)
}

// Serve runs srv on ln until ctx ends, then drains in-flight requests for
// up to 30 seconds.
func Serve(ctx context.Context, ln net.Listener, srv *http.Server, log *slog.Logger) error {
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// check validates the configuration and reaches the IdP's discovery
// document and the session store, reporting every problem.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("check", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	gw, err := moat.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer gw.Close()
	cctx, cancel := context.WithTimeout(ctx, cfg.OIDC.Timeout.D())
	defer cancel()
	if err := gw.Check(cctx); err != nil {
		fmt.Fprintf(stderr, "moat: %s has problems:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		return errReported
	}
	fmt.Fprintf(stdout, "%s: OK\n", path)
	return nil
}

func version() string {
	v, rev, dirty := "(devel)", "unknown", ""
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	return fmt.Sprintf("moat %s commit %s%s %s", v, rev, dirty, goVersion)
}

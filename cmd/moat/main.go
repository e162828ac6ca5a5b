// Command moat runs the moat Backend-for-Frontend.
//
//	moat serve   --config moat.yaml   run the gateway
//	moat check   --config moat.yaml   validate the config and reach the IdP (read-only)
//	moat init    --issuer URL ...     write a starting config for an IdP
//	moat migrate --config moat.yaml   create or migrate the session store
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

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/gateway"
	"github.com/moat-bff/moat/internal/logbuf"
	"github.com/moat-bff/moat/internal/onboard"
	"github.com/moat-bff/moat/internal/telemetry"
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

// errHelp means a subcommand printed its usage for --help; run returns nil.
var errHelp = errors.New("help shown")

// parseFlags parses a subcommand's flags. --help prints the usage to
// stdout and returns errHelp; a bad flag prints it to stderr.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelp
	case err != nil:
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		fs.Usage()
		return errReported
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errReported
	}
	return nil
}

// noFlags is the flag set of a subcommand without flags, for --help.
func noFlags(name, doc string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("moat "+name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintf(fs.Output(), "usage: moat %s\n\n%s\n", name, doc) }
	return parseFlags(fs, args, stdout, stderr)
}

const usage = `usage: moat <command> [flags]

commands:
  serve   --config FILE   run the gateway (FILE also from MOAT_CONFIG)
  check   --config FILE   validate the config and reach the IdP and store (read-only)
  init    --issuer URL    read the IdP's discovery, write a commented config and keys
  migrate --config FILE   create or migrate the session store, as serve does at start
  reset-key-check --config FILE
                          let moat start with keys that cannot open the stored sessions
  demo                    run moat with a dev IdP, an API and a demo SPA on loopback
  keygen                  print a fresh base64 session key
  keygen --jwk --out FILE create a private_key_jwt client key, print its public JWK set
  version                 print version information
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	defer func() {
		if errors.Is(err, errHelp) {
			err = nil
		}
	}()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errReported
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "check":
		return check(ctx, args[1:], stdout, stderr)
	case "init":
		return initCmd(ctx, args[1:], os.Stdin, isInteractive(os.Stdin), stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr)
	case "reset-key-check":
		return resetKeyCheck(ctx, args[1:], stdout, stderr)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "version":
		if err := noFlags("version", "Prints moat's version, commit and Go version.", args[1:], stdout, stderr); err != nil {
			return err
		}
		fmt.Fprintln(stdout, version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "moat: unknown command %q\n\n%s", args[0], usage)
	return errReported
}

func configFlag(name, doc string, args []string, stdout, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet("moat "+name, flag.ContinueOnError)
	path := fs.String("config", os.Getenv("MOAT_CONFIG"), "configuration file (default $MOAT_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: moat %s --config FILE\n\n%s\n\nflags:\n", name, doc)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return "", err
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

// newLogger logs to w: JSON, or text when log.format says so or, with no
// format configured, when the terminal writes to a terminal. The handlers
// are slog's, with logbuf's fast path for the access log line.
func newLogger(cfg *config.Config, w *logbuf.Writer, terminal bool, level *slog.LevelVar) *slog.Logger {
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.Log.Format
	if format == "" {
		format = "json"
		if terminal {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(logbuf.NewTextHandler(w, opts))
	}
	return slog.New(logbuf.NewJSONHandler(w, opts))
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("serve", "Runs the gateway. SIGHUP reloads FILE; SIGTERM drains and exits.", args, stdout, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path, stderr)
	if err != nil {
		return err
	}
	// A proxy that logs every request should not pay a write(2) for each:
	// lines are batched and written at least every 100 ms (and at exit).
	out := logbuf.New(stderr, 64<<10, 100*time.Millisecond)
	defer out.Close()
	var level slog.LevelVar
	log := newLogger(cfg, out, isTerminal(stderr), &level)
	if os.Getenv("GOGC") == "" {
		// A BFF's live heap is small and its garbage per request large:
		// collecting half as often costs little memory and a noticeable
		// share of CPU per request (docs/performance.md). GOGC overrides.
		debug.SetGCPercent(200)
	}
	routeStrayLogs(log)
	tracing, err := telemetry.Setup(ctx, version())
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tracing.Shutdown(sctx)
	}()
	gw, err := gateway.New(ctx, cfg, log, gateway.Options{Tracing: tracing})
	if err != nil {
		return err
	}
	defer gw.Close()
	// Both listeners open before "moat listening" is logged: a clash on the
	// admin port must not look like a start.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var aln, fln net.Listener
	if gw.Admin != nil {
		if aln, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	if gw.ForwardAuth != nil {
		if fln, err = net.Listen("tcp", cfg.ForwardAuth.Listen); err != nil {
			ln.Close()
			if aln != nil {
				aln.Close()
			}
			return fmt.Errorf("forward_auth listen: %w", err)
		}
	}
	var urls []string
	for _, v := range cfg.Views() {
		urls = append(urls, v.PublicURL)
	}
	log.Info("moat listening", "addr", ln.Addr().String(), "public_url", strings.Join(urls, " "), "version", version(),
		"tracing", telemetry.Enabled(os.Getenv))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, path, gw, &level, log)

	srv, err := gateway.NewHTTPServer(cfg, gw, log)
	if err != nil {
		ln.Close()
		for _, l := range []net.Listener{aln, fln} {
			if l != nil {
				l.Close()
			}
		}
		return err
	}
	errc := make(chan error, 3)
	running := 1
	go func() { errc <- Serve(ctx, ln, srv, cfg.Server.ShutdownGrace.D(), log) }()
	if aln != nil {
		log.Info("admin listening", "addr", aln.Addr().String(), "session_api", !cfg.Admin.Token.IsZero())
		running++
		asrv := gateway.NewInternalHTTPServer(cfg, gw.Admin, log)
		go func() { errc <- Serve(ctx, aln, asrv, cfg.Server.ShutdownGrace.D(), log) }()
	}
	if fln != nil {
		log.Info("forward-auth listening", "addr", fln.Addr().String())
		running++
		fsrv := gateway.NewInternalHTTPServer(cfg, gw.ForwardAuth, log)
		go func() { errc <- Serve(ctx, fln, fsrv, cfg.Server.ShutdownGrace.D(), log) }()
	}
	var first error
	for range running {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// reloadOnHUP reloads the configuration file on SIGHUP. An invalid file, or
// one that changes what only a restart can change, is logged and ignored:
// moat keeps serving with the configuration it has.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, gw *gateway.Gateway, level *slog.LevelVar, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := config.Load(path, os.LookupEnv)
		if err == nil {
			err = gw.Reload(ctx, cfg)
		}
		if err != nil {
			log.Error("configuration reload refused; keeping the old configuration", "error", err)
			continue
		}
		level.UnmarshalText([]byte(cfg.Log.Level))
	}
}

// Serve runs srv on ln until ctx ends. Then it stops accepting connections
// and lets in-flight requests, streams included, finish for up to grace
// before closing what is left.
func Serve(ctx context.Context, ln net.Listener, srv *http.Server, grace time.Duration, log *slog.Logger) error {
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "addr", ln.Addr().String(), "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("grace period over; closing remaining connections", "addr", ln.Addr().String())
		srv.Close()
	}
	return nil
}

// check validates the configuration and reaches the IdP's discovery
// document and the session store, reporting every problem.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("check", "Validates FILE, reaches the IdP's discovery document and reads the session store,\nreporting every problem; it changes nothing.", args, stdout, stderr)
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
	store, err := openStoreReadOnly(ctx, cfg, log, stdout)
	if err != nil {
		return reportProblems(stderr, path, err)
	}
	gw, err := gateway.New(ctx, cfg, log, gateway.Options{Store: store})
	if err != nil {
		return reportProblems(stderr, path, err)
	}
	defer gw.Close()
	timeout := time.Duration(0)
	for _, v := range cfg.Views() {
		timeout = max(timeout, v.OIDC.Timeout.D())
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := gw.Check(cctx); err != nil {
		fmt.Fprintf(stderr, "moat: %s has problems:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		return errReported
	}
	for _, fe := range gw.Frontends() {
		v, of := fe.Config, ""
		if v.Name != "" {
			of = fmt.Sprintf(" (frontend %s)", v.Name)
		}
		if meta, ok := fe.IdP.Cached(); ok {
			for _, w := range onboard.Quirks(meta, v) {
				fmt.Fprintf(stdout, "warning: idp%s: %s\n", of, w)
			}
		}
		fmt.Fprintf(stdout, "register at the IdP for client %s%s:\n", v.OIDC.ClientID, of)
		fmt.Fprintf(stdout, "  redirect URI:                  %s\n", v.RedirectURI())
		fmt.Fprintf(stdout, "  post-logout redirect URI:      %s\n", v.PostLogoutRedirect())
		fmt.Fprintf(stdout, "  back-channel logout URI:       %s\n", config.MustURL(v.PublicURL).JoinPath("/auth/backchannel-logout"))
	}
	fmt.Fprintf(stdout, "%s: OK\n", path)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
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

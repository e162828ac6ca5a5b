package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc"
	"github.com/moat-bff/moat/internal/onboard"
	"github.com/moat-bff/moat/internal/session"
)

const initDoc = `Reads the OpenID Provider's discovery document, reports what it supports,
writes a commented configuration and a session key file, and prints what to
register at the provider. Missing values are asked for on a terminal.
The client secret is never written: it stays in --client-secret-file or in
MOAT_OIDC_CLIENT_SECRET.`

// initCmd is `moat init`. stdin is read for answers when interactive.
func initCmd(ctx context.Context, args []string, stdin io.Reader, interactive bool, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("moat init", flag.ContinueOnError)
	issuer := fs.String("issuer", "", "the provider's issuer URL, e.g. https://idp.example.com/realms/main")
	clientID := fs.String("client-id", "", "the client ID registered (or to be registered) at the provider")
	secretFile := fs.String("client-secret-file", "", "file holding the client secret (or set MOAT_OIDC_CLIENT_SECRET)")
	publicURL := fs.String("public-url", "", "moat's origin as browsers see it (default http://127.0.0.1:4001)")
	frontendURL := fs.String("frontend-url", "", "the SPA's origin when it is not moat's, e.g. http://localhost:5173")
	upstream := fs.String("upstream", "", "the API moat forwards to with the user's token, e.g. https://api.internal/")
	prefix := fs.String("prefix", "/api/", "the path prefix on moat that goes to --upstream")
	listen := fs.String("listen", "", "the listener address (default: public_url's host:port when it is loopback, else :4001)")
	out := fs.String("out", "moat.yaml", "the configuration file to write")
	keysFile := fs.String("keys-file", "", "the session key file to create (default: moat.keys next to --out)")
	caFile := fs.String("ca-file", "", "PEM roots for the provider's TLS certificate, added to the system's (written as oidc.ca_file)")
	force := fs.Bool("force", false, "overwrite existing files")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: moat init --issuer URL --client-id ID [flags]\n\n%s\n\nflags:\n", initDoc)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}

	in := bufio.NewReader(stdin)
	ask := func(v *string, question, def string) error {
		if *v != "" || !interactive {
			return nil
		}
		if def != "" {
			fmt.Fprintf(stdout, "%s [%s]: ", question, def)
		} else {
			fmt.Fprintf(stdout, "%s: ", question)
		}
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(stdout)
			interactive = false // input ended: what is still missing is reported below
		}
		*v = strings.TrimSpace(line)
		if *v == "" {
			*v = def
		}
		return nil
	}
	_, envSecret := os.LookupEnv("MOAT_OIDC_CLIENT_SECRET")
	for _, a := range []struct {
		v        *string
		q, def   string
		optional bool
	}{
		{issuer, "Issuer URL of your OpenID Provider", "", false},
		{clientID, "Client ID", "", false},
		{publicURL, "moat's public URL (origin browsers use)", "http://127.0.0.1:4001", false},
		{frontendURL, "The SPA's origin if it is not moat's (empty: moat serves it)", "", true},
		{upstream, "Your API's URL for moat to forward to (empty: none yet)", "", true},
	} {
		if err := ask(a.v, a.q, a.def); err != nil {
			return err
		}
	}
	if !envSecret {
		if err := ask(secretFile, "File holding the client secret", ""); err != nil {
			return err
		}
	}
	if *publicURL == "" {
		*publicURL = "http://127.0.0.1:4001"
	}
	var missing []string
	if *issuer == "" {
		missing = append(missing, "--issuer")
	}
	if *clientID == "" {
		missing = append(missing, "--client-id")
	}
	if *secretFile == "" && !envSecret {
		missing = append(missing, "--client-secret-file (or MOAT_OIDC_CLIENT_SECRET)")
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "moat init: missing %s\n", strings.Join(missing, ", "))
		return errReported
	}
	if *secretFile != "" {
		abs, err := filepath.Abs(*secretFile)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(abs)
		if err != nil || strings.TrimSpace(string(b)) == "" {
			fmt.Fprintf(stderr, "moat init: --client-secret-file %s must hold the client secret (%v)\n", *secretFile, err)
			return errReported
		}
		*secretFile = abs
		if envSecret {
			fmt.Fprintln(stdout, "note: MOAT_OIDC_CLIENT_SECRET is set and takes precedence over client_secret_file")
		}
	}
	if *listen == "" {
		*listen = ":4001"
		if u, err := url.Parse(*publicURL); err == nil && config.IsLoopbackHost(u.Hostname()) {
			port := u.Port()
			if port == "" {
				port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
			}
			*listen = net.JoinHostPort(u.Hostname(), port)
		}
	}
	outAbs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if *keysFile == "" {
		*keysFile = filepath.Join(filepath.Dir(outAbs), "moat.keys")
	}
	keysAbs, err := filepath.Abs(*keysFile)
	if err != nil {
		return err
	}
	for _, f := range []string{outAbs, keysAbs} {
		if _, err := os.Stat(f); err == nil && !*force {
			fmt.Fprintf(stderr, "moat init: %s exists; move it away or pass --force\n", f)
			return errReported
		}
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	if *caFile != "" {
		abs, err := filepath.Abs(*caFile)
		if err != nil {
			return err
		}
		pool, err := config.LoadCertPool(abs)
		if err != nil {
			fmt.Fprintf(stderr, "moat init: --ca-file: %v\n", err)
			return errReported
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
		*caFile = abs
	}
	idp := oidc.New(oidc.Config{Issuer: *issuer, HTTPClient: hc}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	meta, err := idp.Discover(dctx)
	if err != nil {
		fmt.Fprintf(stderr, "moat init: reading the discovery document of %s failed: %v\n", *issuer, err)
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintln(stderr, "  (is the issuer reachable from here?)")
		}
		return errReported
	}
	fmt.Fprintf(stdout, "\n%s supports:\n", meta.Issuer)
	for _, f := range onboard.Features(meta) {
		mark := "no "
		if f.OK {
			mark = "yes"
		}
		fmt.Fprintf(stdout, "  %s  %-44s %s\n", mark, f.Name, f.Effect)
	}

	answers := onboard.Answers{
		Issuer: *issuer, ClientID: *clientID, ClientSecretFile: *secretFile, PublicURL: *publicURL,
		FrontendURL: *frontendURL, Upstream: *upstream, Prefix: *prefix, KeysFile: keysAbs, Listen: *listen,
		CAFile: *caFile,
	}
	if err := writePrivate(keysAbs, []byte(session.NewKey()+"\n"), *force); err != nil {
		return fmt.Errorf("writing the session key: %w", err)
	}
	if err := writePrivate(outAbs, []byte(onboard.Config(answers, meta)), *force); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	cfg, err := config.Load(outAbs, os.LookupEnv)
	if err != nil {
		// An answer was out of range (e.g. an http public_url off
		// loopback): say which, keep the file for editing.
		fmt.Fprintf(stderr, "moat init: wrote %s, but it is not valid yet:\n", outAbs)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		return errReported
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s (a fresh session key, mode 0600)\n", outAbs, keysAbs)
	for _, w := range onboard.Quirks(meta, cfg) {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "\nregister at the provider (client %s):\n", *clientID)
	for _, r := range onboard.Registration(answers, meta) {
		fmt.Fprintf(stdout, "  %s\n", r)
	}
	fmt.Fprintf(stdout, "\nthen:\n  moat check --config %s\n  moat serve --config %s\n", outAbs, outAbs)
	return nil
}

// writePrivate creates path with mode 0600 and writes data. With replace,
// an existing file is removed first rather than rewritten in place:
// os.WriteFile keeps an existing file's mode, which would put a fresh
// session key into a file others may read. Without replace, an existing
// file is an error (O_EXCL), even one created since init looked.
func writePrivate(path string, data []byte, replace bool) error {
	if replace {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// isInteractive reports whether f is a terminal someone can answer on:
// a character device other than /dev/null.
func isInteractive(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moat-bff/moat/internal/clientauth"
	"github.com/moat-bff/moat/internal/session"
)

// keygen prints a session key, or with --jwk creates a private_key_jwt
// client key (OIDC Core §9) and prints the public JWK set to register.
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("moat keygen", flag.ContinueOnError)
	jwk := fs.Bool("jwk", false, "create a private_key_jwt client key instead: written to --out, its public JWK set printed")
	out := fs.String("out", "", "with --jwk: the private key file to create (PEM, mode 0600, never overwritten)")
	alg := fs.String("alg", "ES256", "with --jwk: ES256, EdDSA or PS256")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: moat keygen [--jwk --out FILE [--alg ES256]]\n\n"+
			"Prints a fresh random session key (32 bytes, base64) for session.keys.\n"+
			"With --jwk, creates a client key for oidc.client_auth_method: private_key_jwt.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if !*jwk {
		var stray string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "jwk" {
				stray = f.Name
			}
		})
		if stray != "" {
			// Without --jwk a session key is printed and no file written:
			// not what someone giving --out expects.
			return fmt.Errorf("keygen: --%s goes with --jwk (moat keygen --jwk --out FILE); without --jwk keygen prints a session key", stray)
		}
		fmt.Fprintln(stdout, session.NewKey())
		return nil
	}
	if *out == "" {
		return errors.New("keygen --jwk: --out FILE is required: the private key is written there, never printed")
	}
	key, err := clientauth.Generate(*alg)
	if err != nil {
		return fmt.Errorf("keygen --jwk: %w", err)
	}
	ks, err := clientauth.Parse(key)
	if err != nil {
		return err
	}
	if err := writeNew(*out, key); err != nil {
		return fmt.Errorf("keygen --jwk: %w", err)
	}
	pub, _ := json.MarshalIndent(ks.Public(), "", "  ")
	fmt.Fprintf(stdout, "%s\n", pub)
	fmt.Fprintf(stderr, "wrote the private key to %s\n"+
		"register the public JWK set above at the IdP (or let it fetch <public_url>/auth/jwks), then set:\n"+
		"  oidc:\n    client_auth_method: private_key_jwt\n    client_key_file: %s\n", *out, *out)
	return nil
}

// writeNew creates path holding data, mode 0600, all or nothing: data goes
// to a temporary file in the same directory, synced, then hard-linked to
// path, which fails if path exists (an existing key is never overwritten,
// as a rename would). A failed write (disk full) leaves neither a partial
// key nor the temporary file.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: an existing key is never overwritten", path)
	} else if err != nil {
		return err
	}
	return nil
}

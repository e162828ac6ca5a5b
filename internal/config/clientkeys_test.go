//go:build unix

package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/config"
)

// TestClientKeyFileReadOnce: validation reads and parses client_key_file
// once, and every check (here fapi2's algorithm check) judges those same
// bytes. The file is a FIFO written once: a second read would wait.
func TestClientKeyFileReadOnce(t *testing.T) {
	_, keyFile, rs256 := clientFiles(t)
	for _, tc := range []struct {
		name, src, want string
	}{
		{"ES256 key", keyFile, "oidc.dpop: is off and oidc.client_cert_file is empty, so under oidc.profile: fapi2"},
		{"RS256 key", rs256, `oidc.client_key_file: its first key (kid "old") signs with RS256`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := os.ReadFile(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			fifo := filepath.Join(t.TempDir(), "client-key")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skipf("no FIFO here: %v", err)
			}
			go func() { // one writer: a second read would wait for another
				if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
					f.Write(key)
					f.Close()
				}
			}()
			c := &config.Config{Listen: "127.0.0.1:0", PublicURL: "http://127.0.0.1:4001", OIDC: config.OIDC{
				Issuer: "https://idp.example.com", ClientID: "c", Profile: config.ProfileFAPI2,
				ClientAuthMethod: config.AuthPrivateKeyJWT, ClientKeyFile: fifo,
			}}
			c.SetDefaults()
			verr := make(chan error, 1)
			go func() { verr <- c.Validate() }()
			select {
			case err = <-verr:
			case <-time.After(5 * time.Second):
				// The second read waits for a writer: give it an empty one.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				<-verr
				t.Fatal("validation read client_key_file a second time")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

package redisstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests need no Redis and always run.

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		want config
	}{
		{"redis://localhost", config{scheme: "redis", addrs: []string{"localhost:6379"}}},
		{"redis://127.0.0.1:6380/3", config{scheme: "redis", addrs: []string{"127.0.0.1:6380"}, db: 3}},
		{"REDIS://h/", config{scheme: "redis", addrs: []string{"h:6379"}}},
		{"redis://:s3cret@h:1/0", config{scheme: "redis", addrs: []string{"h:1"}, password: "s3cret"}},
		{"redis://moat:p%40ss%3Aw%2Frd@h", config{scheme: "redis", addrs: []string{"h:6379"}, username: "moat", password: "p@ss:w/rd"}},
		{"redis://[::1]:7000/2", config{scheme: "redis", addrs: []string{"[::1]:7000"}, db: 2}},
		{"redis://[::1]", config{scheme: "redis", addrs: []string{"[::1]:6379"}}},
		{"rediss://u:p@cache.example:6380/1", config{scheme: "rediss", tls: true, addrs: []string{"cache.example:6380"}, db: 1, username: "u", password: "p"}},
		{"rediss://h?ca_file=/etc/ca.pem&tls_server_name=redis.internal", config{scheme: "rediss", tls: true, addrs: []string{"h:6379"}, caFile: "/etc/ca.pem", tlsServerName: "redis.internal"}},
		{"redis://h?prefix=app1:&timeout=250ms", config{scheme: "redis", addrs: []string{"h:6379"}, prefix: "app1:", timeout: 250 * time.Millisecond, dialTimeout: 250 * time.Millisecond}},
		{"redis://h?timeout=2s&dial_timeout=5s", config{scheme: "redis", addrs: []string{"h:6379"}, timeout: 2 * time.Second, dialTimeout: 5 * time.Second}},
		{"redis://h?prefix=%7Bmoat%7D%3A", config{scheme: "redis", addrs: []string{"h:6379"}, prefix: "{moat}:"}},
		{"redis+sentinel://s1,s2:26380,s3:26381/mymaster", config{scheme: "redis+sentinel", mode: modeSentinel, addrs: []string{"s1:26379", "s2:26380", "s3:26381"}, master: "mymaster"}},
		{"redis+sentinel://u:p@s1/mymaster/4?sentinel_user=su&sentinel_password=sp", config{scheme: "redis+sentinel", mode: modeSentinel, addrs: []string{"s1:26379"}, master: "mymaster", db: 4, username: "u", password: "p", sentinelUsername: "su", sentinelPassword: "sp"}},
		{"redis+sentinel://s1/mymaster?sentinel_password=sp", config{scheme: "redis+sentinel", mode: modeSentinel, addrs: []string{"s1:26379"}, master: "mymaster", sentinelPassword: "sp"}},
		{"rediss+sentinel://s1/m", config{scheme: "rediss+sentinel", mode: modeSentinel, tls: true, addrs: []string{"s1:26379"}, master: "m"}},
		{"redis+cluster://n1:7000,n2:7001,[::1]:7002", config{scheme: "redis+cluster", mode: modeCluster, addrs: []string{"n1:7000", "n2:7001", "[::1]:7002"}}},
		{"redis+cluster://n1/0", config{scheme: "redis+cluster", mode: modeCluster, addrs: []string{"n1:6379"}}},
		{"rediss+cluster://:pw@n1:7000", config{scheme: "rediss+cluster", mode: modeCluster, tls: true, addrs: []string{"n1:7000"}, password: "pw"}},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseURL(tc.url)
			if err != nil {
				t.Fatalf("parseURL: %v", err)
			}
			want := tc.want
			if want.prefix == "" {
				want.prefix = DefaultPrefix
			}
			if want.timeout == 0 {
				want.timeout = DefaultTimeout
			}
			if want.dialTimeout == 0 {
				want.dialTimeout = want.timeout
			}
			if !equalConfig(got, want) {
				t.Fatalf("parseURL =\n  %+v\nwant\n  %+v", got, want)
			}
		})
	}
}

func equalConfig(a, b config) bool {
	return slices.Equal(a.addrs, b.addrs) && reflect.DeepEqual(a, b)
}

func TestParseURLErrors(t *testing.T) {
	const secret = "s3cret-Pa55"
	tests := []struct {
		url  string
		want string // in the error
	}{
		{"", "empty"},
		{"localhost:6379", "missing scheme"},
		{"http://h", `unknown scheme "http"`},
		{"redis+tls://h", "unknown scheme"},
		{"redis://", "no host"},
		{"redis://u:" + secret + "@", "no host"},
		{"redis://h:0", `bad port "0"`},
		{"redis://h:65536", `bad port "65536"`},
		{"redis://u:" + secret + "@h:abc", `bad port "abc"`},
		{"redis://h:6379:1", "bad host"},
		{"redis://a,b", "takes one host"},
		{"redis://a,,b", "empty host"},
		{"redis://h/x", `database "x"`},
		{"redis://h/-1", `database "-1"`},
		{"redis://h/01", `database "01"`},
		{"redis://h/1/2", "too many parts"},
		{"redis://user@h", `user "user" has no password`},
		{"redis://u:%zz" + secret + "@h", "percent-encoding in the password"},
		{"redis://u:" + secret + "@h#frag", "fragments"},
		{"redis://h?prefix=", "prefix= is empty"},
		{"redis://h?timeout=fast", "timeout="},
		{"redis://h?timeout=0s", "timeout="},
		{"redis://h?timeout=-1s", "timeout="},
		{"redis://h?timeout=2m", "timeout="},
		{"redis://h?dial_timeout=x", "dial_timeout="},
		{"redis://h?prefx=a", `unknown parameter "prefx"`},
		{"redis://u:" + secret + "@h?password=" + secret, `unknown parameter "password"`},
		{"redis://h?prefix=a&prefix=b", "given 2 times"},
		{"redis://h?ca_file=/x", "needs TLS: use rediss://"},
		{"redis+sentinel://s/m?ca_file=/x", "use rediss+sentinel://"},
		{"rediss://h?ca_file=", "ca_file= is empty"},
		{"redis://h?sentinel_password=x", "only applies to redis+sentinel"},
		{"redis+sentinel://s", "needs the master set name"},
		{"redis+sentinel://s/", "needs the master set name"},
		{"redis+sentinel://s/m/x", `database "x"`},
		{"redis+sentinel://s/m?sentinel_user=su", "needs sentinel_password"},
		{"redis+cluster://n1/1", "only database 0"},
		{"redis+cluster://n1/0/1", "only database 0"},
		{"redis://h?a=%zz", "malformed query"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Open(context.Background(), tc.url, Options{})
			if err == nil {
				t.Fatalf("Open succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

func TestConfigStringHidesPassword(t *testing.T) {
	tests := []struct{ url, want string }{
		{"redis://u:s3cret@h:1/2", "redis://u:REDACTED@h:1/2"},
		{"redis://:s3cret@h", "redis://:REDACTED@h:6379/0"},
		{"redis://h", "redis://h:6379/0"},
		{"redis+sentinel://u:s3cret@a,b/mm/1?sentinel_password=s3cret", "redis+sentinel://u:REDACTED@a:26379,b:26379/mm/1"},
		{"rediss+cluster://:s3cret@a:7000", "rediss+cluster://:REDACTED@a:7000"},
	}
	for _, tc := range tests {
		c, err := parseURL(tc.url)
		if err != nil {
			t.Fatalf("parseURL(%q): %v", tc.url, err)
		}
		if got := c.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	c, _ := parseURL("redis://h")
	if tc, err := c.tlsConfig(); tc != nil || err != nil {
		t.Fatalf("redis:// tlsConfig = %v, %v; want none", tc, err)
	}

	c, _ = parseURL("rediss://h")
	tc, err := c.tlsConfig()
	if err != nil || tc == nil || tc.RootCAs != nil || tc.MinVersion == 0 {
		t.Fatalf("rediss:// tlsConfig = %+v, %v; want system roots and a minimum version", tc, err)
	}

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, selfSignedPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ = parseURL("rediss://h?tls_server_name=redis.internal&ca_file=" + caFile)
	tc, err = c.tlsConfig()
	if err != nil || tc.RootCAs == nil || tc.ServerName != "redis.internal" {
		t.Fatalf("tlsConfig with ca_file = %+v, %v", tc, err)
	}

	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "no such file",
		junk:                              "holds no PEM certificate",
	} {
		_, err := Open(context.Background(), "rediss://127.0.0.1:1?ca_file="+file, Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open with ca_file=%s: %v; want an error containing %q", filepath.Base(file), err, want)
		}
	}
}

// selfSignedPEM returns a self-signed CA certificate valid for 127.0.0.1,
// and its key, in PEM.
func selfSignedPEM(t *testing.T) []byte {
	cert, _ := selfSigned(t)
	return cert
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "moat test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestTLSVerification runs a TLS server that completes handshakes and then
// says nothing: a certificate that fails verification must fail Open (a
// configuration error, not an outage), and with ca_file naming its CA the
// handshake passes and Open returns a Store that waits for Redis.
func TestTLSVerification(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c) // handshakes, then never answers
			}()
		}
	}()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, certPEM, 0o600)
	addr := ln.Addr().String()

	// A refused certificate fails at once; the long timeout only keeps a
	// slow handshake on a loaded machine from looking like an outage.
	_, err = Open(t.Context(), "rediss://"+addr+"?timeout=5s", Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Open with an untrusted certificate = %v, want a certificate error", err)
	}
	_, err = Open(t.Context(), "rediss://"+addr+"?timeout=5s&ca_file="+caFile+"&tls_server_name=other.name", Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Open with a certificate for another name = %v, want a certificate error", err)
	}
	s, err := Open(t.Context(), "rediss://"+addr+"?timeout=300ms&ca_file="+caFile, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open with ca_file = %v, want a Store waiting for Redis to answer", err)
	}
	s.Close()
}

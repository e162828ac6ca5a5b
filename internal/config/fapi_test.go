package config_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/moat-bff/moat/internal/config"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
)

// clientFiles writes a new ES256 key with its self-signed client
// certificate (PEM, oidctest.WriteClientCert) and a JWK set holding an RSA
// key marked RS256.
func clientFiles(t *testing.T) (certFile, keyFile, rs256File string) {
	t.Helper()
	certFile, keyFile, _ = oidctest.WriteClientCert(t)
	rs256File = filepath.Join(t.TempDir(), "rs256.json")
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rk, KeyID: "old", Algorithm: "RS256", Use: "sig"}}})
	os.WriteFile(rs256File, set, 0o600)
	return certFile, keyFile, rs256File
}

// TestFAPI2Config: oidc.profile fapi2 refuses every setting that cannot
// meet the FAPI 2.0 Security Profile, naming the key and the fix, and
// makes PAR required by default.
func TestFAPI2Config(t *testing.T) {
	cert, key, rs256 := clientFiles(t)
	const senderConstraint = "set oidc.dpop: true (DPoP, RFC 9449), or bind them to a TLS client certificate (RFC 8705) with client_auth_method: tls_client_auth or self_signed_tls_client_auth, or private_key_jwt together with oidc.client_cert_file"
	for _, tc := range []struct {
		name string
		o    config.OIDC
		want string // "" valid
	}{
		{"mTLS", config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: cert, ClientKeyFile: key}, ""},
		{"PKI mTLS with JAR", config.OIDC{ClientAuthMethod: config.AuthTLSClient, ClientCertFile: cert, ClientKeyFile: key, RequestObject: true}, ""},
		{"private_key_jwt with a certificate", config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientCertFile: cert, ClientKeyFile: key}, ""},
		{"PAR required explicitly", config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: cert, ClientKeyFile: key, PAR: "required"}, ""},
		{"client secret", config.OIDC{ClientSecret: "s"}, "oidc.client_auth_method: is client_secret_basic, but oidc.profile: fapi2 allows only private_key_jwt, tls_client_auth or self_signed_tls_client_auth"},
		{"client_secret_post", config.OIDC{ClientSecret: "s", ClientAuthMethod: config.AuthSecretPost}, senderConstraint},
		{"a secret left over", config.OIDC{ClientSecret: "s", ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: cert, ClientKeyFile: key}, "oidc.client_secret: must not be set with oidc.profile: fapi2"},
		{"private_key_jwt alone: no sender-constraining", config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientKeyFile: key}, "oidc.dpop: is off and oidc.client_cert_file is empty, so under oidc.profile: fapi2 with client_auth_method: private_key_jwt the access tokens would not be sender-constrained: FAPI 2.0 §5.3.2.2 requires sender-constrained access tokens: " + senderConstraint},
		{"private_key_jwt with DPoP", config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientKeyFile: key, DPoP: true}, ""},
		{"mTLS with DPoP", config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: cert, ClientKeyFile: key, DPoP: true}, ""},
		{"DPoP does not allow a client secret", config.OIDC{ClientSecret: "s", ClientAuthMethod: config.AuthSecretBasic, DPoP: true}, "oidc.client_auth_method: is client_secret_basic, but oidc.profile: fapi2 allows only private_key_jwt"},
		{"PAR off", config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: cert, ClientKeyFile: key, PAR: "off"}, "oidc.par: is off, but oidc.profile: fapi2 requires pushed authorization requests"},
		{"PAR auto", config.OIDC{ClientAuthMethod: config.AuthSelfSignedTLS, ClientCertFile: cert, ClientKeyFile: key, PAR: "auto"}, "oidc.par: is auto"},
		{"RS256 client key", config.OIDC{ClientAuthMethod: config.AuthPrivateKeyJWT, ClientCertFile: cert, ClientKeyFile: rs256}, `oidc.client_key_file: its first key (kid "old") signs with RS256, but oidc.profile: fapi2 allows only PS256, ES256 or EdDSA`},
		{"unknown profile", config.OIDC{Profile: "fapi1", ClientSecret: "s"}, `oidc.profile: "fapi1" is not a profile`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Issuer, tc.o.ClientID = "https://idp.example.com", "c"
			if tc.o.Profile == "" {
				tc.o.Profile = config.ProfileFAPI2
			}
			c := &config.Config{Listen: "127.0.0.1:0", PublicURL: "http://127.0.0.1:4001", OIDC: tc.o}
			c.SetDefaults()
			err := c.Validate()
			if tc.want == "" && err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			if tc.want == "" && c.OIDC.PAR != "required" {
				t.Fatalf("oidc.par = %q under fapi2, want required", c.OIDC.PAR)
			}
		})
	}
}

package dpopverify

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error codes of RFC 9449 §5, §7.1 and §12.2, and RFC 6750 §3.1.
const (
	CodeInvalidProof = "invalid_dpop_proof"
	CodeUseNonce     = "use_dpop_nonce"
	CodeInvalidToken = "invalid_token"
)

// Reasons a proof is refused; an *Error wraps one of them.
var (
	ErrMissing         = errors.New("no proof")
	ErrMalformed       = errors.New("malformed proof")
	ErrType            = errors.New("wrong typ")
	ErrKey             = errors.New("unusable jwk")
	ErrSignature       = errors.New("bad signature")
	ErrMethod          = errors.New("htm mismatch")
	ErrURI             = errors.New("htu mismatch")
	ErrNonce           = errors.New("nonce missing or stale")
	ErrStale           = errors.New("iat outside the window")
	ErrAccessTokenHash = errors.New("ath mismatch")
	ErrReplay          = errors.New("replayed jti")
	ErrBinding         = errors.New("key is not the token's cnf.jkt")
	ErrNotBound        = errors.New("token not DPoP-bound")
)

// Error is a refused proof, with what the server answers (RFC 9449 §5,
// §7.1): Code, and for use_dpop_nonce the Nonce to send as DPoP-Nonce.
type Error struct {
	Code        string
	Description string
	Nonce       string
	err         error
}

func proofErr(reason error, desc string, cause ...error) *Error {
	err := reason
	if len(cause) > 0 && cause[0] != nil {
		err = fmt.Errorf("%w: %w", reason, cause[0])
	}
	return &Error{Code: CodeInvalidProof, Description: desc, err: err}
}

func (e *Error) Error() string {
	if e.err == nil {
		return e.Code + ": " + e.Description
	}
	return e.Code + ": " + e.Description + ": " + e.err.Error()
}

func (e *Error) Unwrap() error { return e.err }

// WriteToken answers a token or PAR request whose proof was refused:
// 400 with the JSON error of RFC 6749 §5.2 and, for use_dpop_nonce, the
// DPoP-Nonce header (RFC 9449 §8).
func WriteToken(w http.ResponseWriter, err error) {
	e := asError(err)
	if e.Nonce != "" {
		w.Header().Set("DPoP-Nonce", e.Nonce)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": e.Code, "error_description": e.Description})
}

// WriteResource answers a resource request that was refused: 401 with a
// DPoP challenge naming the error and the accepted algs (RFC 9449 §7.1),
// and DPoP-Nonce for use_dpop_nonce (§9). err nil is the challenge for a
// request without credentials (RFC 6750 §3.1: no error code).
func WriteResource(w http.ResponseWriter, err error, algs []string) {
	ch := `DPoP algs="` + strings.Join(algs, " ") + `"`
	if err != nil {
		e := asError(err)
		ch = fmt.Sprintf(`DPoP error=%q, error_description=%q, algs="%s"`, e.Code, e.Description, strings.Join(algs, " "))
		if e.Nonce != "" {
			w.Header().Set("DPoP-Nonce", e.Nonce)
		}
	}
	w.Header().Set("WWW-Authenticate", ch)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	code := "unauthenticated"
	if err != nil {
		code = asError(err).Code
	}
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInvalidToken, Description: "access token refused", err: err}
}

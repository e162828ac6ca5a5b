package oidc

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// TokenErrorKind is what a token endpoint's refusal means for a session.
type TokenErrorKind int

// Token endpoint error kinds.
const (
	// Transient: an outage (5xx, timeout, connection error, rate limiting,
	// an endpoint that is not there). Sessions survive it; moat answers 503.
	Transient TokenErrorKind = iota
	// GrantDead: the IdP refused the grant itself (RFC 6749 §5.2 with a 4xx,
	// or 400/401 without an error code): the session built on it is over.
	GrantDead
	// ClientRejected: the IdP refused moat's client credentials or the
	// client's right to the grant (invalid_client, unauthorized_client). A
	// new login cannot fix that; sessions survive it and moat answers 503.
	ClientRejected
	// TargetRefused: the IdP refused the resource or audience asked for
	// (invalid_target, RFC 8707 §2 and RFC 8693 §2.2.2): a configuration
	// problem, not a dead grant; sessions survive it and moat answers 503.
	TargetRefused
)

func (k TokenErrorKind) String() string {
	switch k {
	case GrantDead:
		return "grant_dead"
	case ClientRejected:
		return "client_rejected"
	case TargetRefused:
		return "target_refused"
	}
	return "transient"
}

// ClassifyTokenError decides what a token endpoint answer with HTTP status
// and OAuth error code (RFC 6749 §5.2; "" when the body had none) means.
// Providers differ in how they refuse a dead refresh token (invalid_grant,
// invalid_request, 401 with no body …), so every 4xx about the grant ends
// the session, while the two client errors and anything that looks like an
// outage or an intermediary (5xx, 408, 429, 4xx without an error code other
// than 400 and 401) keep it.
func ClassifyTokenError(status int, code string) TokenErrorKind {
	switch code {
	case "invalid_client", "unauthorized_client":
		return ClientRejected
	case "invalid_target":
		return TargetRefused
	case "server_error", "temporarily_unavailable", "slow_down", "authorization_pending":
		return Transient
	case "use_dpop_nonce", "invalid_dpop_proof":
		// RFC 9449 §8, §5: about moat's proof (a nonce asked for again
		// after the one retry, a clock or key the IdP refuses), not the
		// grant: nobody is logged out for it.
		return Transient
	}
	switch {
	case status >= 500:
		return Transient
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		return Transient
	case code != "":
		// invalid_grant, invalid_request, unsupported_grant_type,
		// invalid_scope, access_denied, and codes of the provider's own,
		// with a 4xx or (some providers) a 200.
		return GrantDead
	case status == http.StatusBadRequest || status == http.StatusUnauthorized:
		return GrantDead
	}
	return Transient
}

// ErrClientRejected: the IdP refused moat as a client (invalid_client or
// unauthorized_client at the token endpoint, RFC 6749 §5.2): its
// credentials or registration are wrong. Errors wrapping it also wrap
// ErrUnavailable: sessions survive and moat answers 503.
var ErrClientRejected = errors.New("oidc: the identity provider refused this client")

// clientRejectionLogEvery bounds the error log of a rejected client: every
// token call fails the same way until an operator fixes the registration.
const clientRejectionLogEvery = time.Minute

// ClientRejection is the last time the token endpoint refused moat's
// client, since its last success.
type ClientRejection struct {
	Code string // invalid_client or unauthorized_client
	At   time.Time
}

// ClientRejected reports whether the token endpoint refused moat's client
// since its last successful answer, for /readyz.
func (c *Client) ClientRejected() (ClientRejection, bool) {
	c.rejMu.Lock()
	defer c.rejMu.Unlock()
	return c.rejected, !c.rejected.At.IsZero()
}

// tokenEndpointOK clears a client rejection: the token endpoint accepted
// moat again.
func (c *Client) tokenEndpointOK() {
	c.rejMu.Lock()
	defer c.rejMu.Unlock()
	c.rejected = ClientRejection{}
}

func (c *Client) noteClientRejected(op, code, desc string) {
	now := c.cfg.Now()
	c.rejMu.Lock()
	c.rejected = ClientRejection{Code: code, At: now}
	logIt := c.rejLogged.IsZero() || now.Sub(c.rejLogged) >= clientRejectionLogEvery
	if logIt {
		c.rejLogged = now
	}
	c.rejMu.Unlock()
	if c.cfg.OnClientRejected != nil {
		c.cfg.OnClientRejected()
	}
	if logIt {
		c.log.Error("the identity provider refuses this client: check oidc.client_id, oidc.client_secret, "+
			"oidc.client_auth_method and the client's registration (allowed grant types) at the IdP; "+
			"logged at most once a minute", "op", op, "error_code", code, "error_description", desc)
	}
}

// classify maps a token endpoint failure to ErrInvalidGrant (the session
// is over), ErrClientRejected (with ErrUnavailable) or ErrUnavailable.
func (c *Client) classify(op string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
	}
	status, code := 0, errorCode(re.ErrorCode)
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	what := fmt.Sprintf("%s: status %d", op, status)
	if code != "" {
		what += " " + code
	}
	if re.ErrorDescription != "" {
		what += ": " + truncate(re.ErrorDescription, 200)
	}
	switch ClassifyTokenError(status, code) {
	case GrantDead:
		return fmt.Errorf("%w: %s", ErrInvalidGrant, what)
	case ClientRejected:
		c.noteClientRejected(op, code, truncate(re.ErrorDescription, 200))
		return fmt.Errorf("%w: %w: %s", ErrClientRejected, ErrUnavailable, what)
	case TargetRefused:
		return fmt.Errorf("%w: %s: the identity provider does not accept this target for this client; register it there", ErrUnavailable, what)
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, what)
}

// errorCode keeps an OAuth error code only if it is made of the characters
// RFC 6749 §5.2 allows, so a hostile answer cannot forge log fields.
func errorCode(s string) string {
	if len(s) > 64 {
		return "unknown_error"
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return "unknown_error"
		}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

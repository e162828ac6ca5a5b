// Package secret holds a string type for credentials that must never reach a
// log line, an error message or a browser by accident.
package secret

import "log/slog"

// String is a credential: a client secret, a session key, a token. Every
// formatting path (fmt, slog, encoding/json) prints "REDACTED"; only Reveal
// returns the value, so each use of the clear text is explicit and greppable.
type String string

const redacted = "REDACTED"

// Reveal returns the clear text. Call it only where the value is sent to the
// party it is meant for.
func (s String) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s String) String() string { return redacted }

// GoString implements fmt.GoStringer, so %#v redacts too.
func (s String) GoString() string { return redacted }

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML and friends).
func (s String) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// IsZero reports whether no secret was given.
func (s String) IsZero() bool { return s == "" }

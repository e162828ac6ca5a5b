// Package httperr turns failures into HTTP answers an SPA can act on: a
// status and a small JSON body with a stable code, while the detail goes to
// the log and never to the browser.
package httperr

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Error is a failure with its public face. Code and Msg reach the client;
// Err is logged only.
type Error struct {
	Status int
	Code   string // stable, machine-readable: "unauthenticated", "csrf", ...
	Msg    string // safe to show
	Err    error  // internal detail
	Header http.Header
	// Login, for step_up_required, is the /auth/login URL whose login
	// meets the route's rules.
	Login string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Msg + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error.
func New(status int, code, msg string, err error) *Error {
	return &Error{Status: status, Code: code, Msg: msg, Err: err}
}

// Common answers.
func Unauthenticated(err error) *Error {
	return New(http.StatusUnauthorized, "unauthenticated", "no valid session; log in", err)
}

// Unavailable is a 503 for an IdP or store outage: retry later, still
// logged in.
func Unavailable(err error) *Error {
	return New(http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable; retry shortly", err)
}

// Body is the JSON shape of every error moat writes.
type Body struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Login   string `json:"login,omitempty"`
}

// Write sends err as JSON. Errors that are not *Error become a 500 whose
// detail stays hidden.
func Write(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = New(http.StatusInternalServerError, "internal", "internal error", err)
	}
	for k, vs := range e.Header {
		w.Header()[k] = vs
	}
	WriteJSON(w, e.Status, Body{Error: e.Code, Message: e.Msg, Login: e.Login})
}

// WriteJSON writes v as a JSON response that no browser may sniff or cache.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

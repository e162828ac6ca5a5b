// Package admin is moat's session admin API, served on its own listener
// (never the browser-facing one) and protected by a bearer token: list a
// user's sessions, revoke one, revoke all of a user's. Revocation deletes
// the session everywhere (it lives in the shared store) and revokes its
// refresh token at the IdP.
package admin

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/revoke"
	"github.com/moat-bff/moat/internal/secret"
	"github.com/moat-bff/moat/internal/session"
)

// Handler serves /admin/sessions.
type Handler struct {
	sessions *session.Manager
	revoker  *revoke.Queue
	token    secret.String
	log      *slog.Logger
	mux      *http.ServeMux
}

// New returns the admin handler. Every request must carry
// "Authorization: Bearer <token>".
func New(sessions *session.Manager, revoker *revoke.Queue, token secret.String, log *slog.Logger) *Handler {
	h := &Handler{sessions: sessions, revoker: revoker, token: token, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/sessions", h.list)
	h.mux.HandleFunc("DELETE /admin/sessions", h.revokeSubject)
	h.mux.HandleFunc("DELETE /admin/sessions/{id}", h.revokeOne)
	return h
}

// Mux returns the admin mux, so other admin endpoints (metrics) can join.
func (h *Handler) Mux() *http.ServeMux { return h.mux }

// ServeHTTP routes; /admin/ requests must carry the bearer token (there is
// no way in without one configured).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/admin/") {
		h.mux.ServeHTTP(w, r)
		return
	}
	if h.token.IsZero() {
		// Say so, rather than "token required": no token would be accepted.
		httperr.Write(w, httperr.New(http.StatusNotFound, "disabled",
			"the session admin API is disabled: set admin.token (or admin.token_file, or MOAT_ADMIN_TOKEN) to at least 32 characters, e.g. the output of `moat keygen`, and restart moat", nil))
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.token.Reveal())) != 1 {
		e := httperr.New(http.StatusUnauthorized, "unauthenticated", "admin token required", nil)
		e.Header = http.Header{"Www-Authenticate": {`Bearer realm="moat-admin"`}}
		httperr.Write(w, e)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// Session is one session as the admin API shows it; never a token.
type Session struct {
	ID        string    `json:"id"` // the store key: a hash, not the cookie value
	Subject   string    `json:"sub"`
	SID       string    `json:"sid,omitempty"`
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"lastSeen"`
	ExpiresAt time.Time `json:"expiresAt"`
	UserAgent string    `json:"userAgent,omitempty"`
	IP        string    `json:"ip,omitempty"`
}

// subjectSessions reads the sub query parameter and that user's sessions,
// answering the error itself when it returns false.
func (h *Handler) subjectSessions(w http.ResponseWriter, r *http.Request) (string, map[session.Key]session.Record, bool) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		httperr.Write(w, httperr.New(http.StatusBadRequest, "bad_request", "the sub query parameter is required", nil))
		return "", nil, false
	}
	recs, err := h.sessions.Store().ListBySubject(r.Context(), sub)
	if err != nil {
		httperr.Write(w, httperr.Unavailable(err))
		return "", nil, false
	}
	return sub, recs, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	_, recs, ok := h.subjectSessions(w, r)
	if !ok {
		return
	}
	out := []Session{}
	for key, rec := range recs {
		l, err := h.sessions.Decode(key, rec)
		if err != nil {
			continue
		}
		out = append(out, Session{ID: string(key), Subject: l.Subject, SID: l.SID, Created: l.CreatedAt, LastSeen: l.LastSeen,
			ExpiresAt: l.Deadline(h.sessions.IdleTimeout()), UserAgent: l.UserAgent, IP: l.RemoteIP})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (h *Handler) revokeOne(w http.ResponseWriter, r *http.Request) {
	key := session.Key(r.PathValue("id"))
	l, err := h.sessions.LoadKey(r.Context(), key)
	if errors.Is(err, session.ErrNoSession) {
		httperr.Write(w, httperr.New(http.StatusNotFound, "not_found", "no such session", nil))
		return
	}
	if err != nil {
		httperr.Write(w, httperr.Unavailable(err))
		return
	}
	if err := h.end(r, l); err != nil {
		httperr.Write(w, httperr.Unavailable(err))
		return
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

func (h *Handler) revokeSubject(w http.ResponseWriter, r *http.Request) {
	sub, recs, ok := h.subjectSessions(w, r)
	if !ok {
		return
	}
	n := 0
	for key, rec := range recs {
		l, err := h.sessions.Decode(key, rec)
		if err != nil {
			l = &session.Loaded{Key: key, Session: session.Session{Subject: sub}}
		}
		if err := h.end(r, l); err != nil {
			httperr.Write(w, httperr.Unavailable(err))
			return
		}
		n++
	}
	// Sessions created while we listed are caught by the index sweep.
	if swept, err := h.sessions.DeleteBy(r.Context(), sub, ""); err == nil {
		for _, k := range swept {
			h.log.Info("session revoked by admin", "audit", true, "event", "admin_revoke", "sub", sub, "session", k.Short())
		}
		n += len(swept)
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (h *Handler) end(r *http.Request, l *session.Loaded) error {
	if err := h.sessions.Delete(r.Context(), nil, l.Key); err != nil {
		return err
	}
	h.revoker.Add(revoke.Job{Token: l.Tokens.RefreshToken, Subject: l.Subject, Session: l.Key.Short()})
	h.log.Info("session revoked by admin", "audit", true, "event", "admin_revoke", "sub", l.Subject, "session", l.Key.Short())
	return nil
}

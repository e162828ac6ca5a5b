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
	frontends []Frontend
	token     secret.String
	log       *slog.Logger
	mux       *http.ServeMux
}

// Frontend is one frontend's sessions (session.Manager.Frontend) and the
// queue that revokes its refresh tokens at its IdP.
type Frontend struct {
	Sessions *session.Manager
	Revoker  *revoke.Queue
}

// New returns the admin handler for the frontends moat serves (one without
// frontends in the configuration). Every request must carry
// "Authorization: Bearer <token>".
func New(frontends []Frontend, token secret.String, log *slog.Logger) *Handler {
	h := &Handler{frontends: frontends, token: token, log: log, mux: http.NewServeMux()}
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
	ID      string `json:"id"` // the store key: a hash, not the cookie value
	Subject string `json:"sub"`
	SID     string `json:"sid,omitempty"`
	// Frontend is the frontend's name; absent without frontends.
	Frontend  string    `json:"frontend,omitempty"`
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"lastSeen"`
	ExpiresAt time.Time `json:"expiresAt"`
	UserAgent string    `json:"userAgent,omitempty"`
	IP        string    `json:"ip,omitempty"`
}

// sessionsOf is one frontend's live sessions of a subject.
type sessionsOf struct {
	Frontend
	recs map[session.Key]session.Record
}

// subjectSessions reads the sub query parameter and that user's sessions
// at every frontend, answering the error itself when it returns false.
func (h *Handler) subjectSessions(w http.ResponseWriter, r *http.Request) (string, []sessionsOf, bool) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		httperr.Write(w, httperr.New(http.StatusBadRequest, "bad_request", "the sub query parameter is required", nil))
		return "", nil, false
	}
	var out []sessionsOf
	for _, fe := range h.frontends {
		recs, err := fe.Sessions.ListBySubject(r.Context(), sub)
		if err != nil {
			httperr.Write(w, httperr.Unavailable(err))
			return "", nil, false
		}
		out = append(out, sessionsOf{fe, recs})
	}
	return sub, out, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	_, all, ok := h.subjectSessions(w, r)
	if !ok {
		return
	}
	out := []Session{}
	for _, fe := range all {
		for key, rec := range fe.recs {
			l, err := fe.Sessions.Decode(key, rec)
			if err != nil {
				continue
			}
			out = append(out, Session{ID: string(key), Subject: l.Subject, SID: l.SID, Frontend: l.Frontend, Created: l.CreatedAt, LastSeen: l.LastSeen,
				ExpiresAt: l.Deadline(fe.Sessions.IdleTimeout()), UserAgent: l.UserAgent, IP: l.RemoteIP})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (h *Handler) revokeOne(w http.ResponseWriter, r *http.Request) {
	key := session.Key(r.PathValue("id"))
	l, err := h.frontends[0].Sessions.LoadKey(r.Context(), key) // by key: any frontend's
	if errors.Is(err, session.ErrNoSession) {
		httperr.Write(w, httperr.New(http.StatusNotFound, "not_found", "no such session", nil))
		return
	}
	if err != nil {
		httperr.Write(w, httperr.Unavailable(err))
		return
	}
	fe, ok := h.frontendOf(l)
	if !ok {
		httperr.Write(w, httperr.New(http.StatusNotFound, "not_found", "no such session", nil))
		return
	}
	if err := h.end(r, fe, l); err != nil {
		httperr.Write(w, httperr.Unavailable(err))
		return
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]int{"revoked": 1})
}

// frontendOf returns the frontend l was created at; none for a frontend
// no longer configured.
func (h *Handler) frontendOf(l *session.Loaded) (Frontend, bool) {
	for _, fe := range h.frontends {
		if fe.Sessions.FrontendName() == l.Frontend {
			return fe, true
		}
	}
	return Frontend{}, false
}

func (h *Handler) revokeSubject(w http.ResponseWriter, r *http.Request) {
	sub, all, ok := h.subjectSessions(w, r)
	if !ok {
		return
	}
	n := 0
	for _, fe := range all {
		for key, rec := range fe.recs {
			l, err := fe.Sessions.Decode(key, rec)
			if err != nil {
				l = &session.Loaded{Key: key, Session: session.Session{Subject: sub}}
			}
			if err := h.end(r, fe.Frontend, l); err != nil {
				httperr.Write(w, httperr.Unavailable(err))
				return
			}
			n++
		}
		// Sessions created while we listed are caught by the index sweep.
		if swept, err := fe.Sessions.DeleteBy(r.Context(), sub, ""); err == nil {
			for _, k := range swept {
				h.log.Info("session revoked by admin", "audit", true, "event", "admin_revoke", "sub", sub, "session", k.Short())
			}
			n += len(swept)
		}
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (h *Handler) end(r *http.Request, fe Frontend, l *session.Loaded) error {
	if err := fe.Sessions.Delete(r.Context(), nil, l.Key); err != nil {
		return err
	}
	fe.Revoker.Add(revoke.Job{Token: l.Tokens.RefreshToken, Subject: l.Subject, Session: l.Key.Short()})
	h.log.Info("session revoked by admin", "audit", true, "event", "admin_revoke", "sub", l.Subject, "session", l.Key.Short(), "frontend", l.Frontend)
	return nil
}

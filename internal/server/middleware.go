package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/proxy"
	"github.com/moat-bff/moat/internal/session"
)

// chain wraps h in middlewares, the first outermost.
func chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// reqInfo collects what the access log line reports about a request. It is
// filled in by the handlers as they learn it.
type reqInfo struct {
	id       string
	ip       string // the client, as far as trusted proxies tell
	route    string
	session  session.Key
	sub      string
	upstream int // the upstream's status, for proxied requests
	err      error
	// now is the one reading of the session manager's clock (which the
	// rate limits share) that the request's limits and session use.
	now time.Time
}

// clock returns the request's reading of the sessions' clock, taking it
// if nobody has yet.
func (s *Server) clock(ri *reqInfo) time.Time {
	if ri.now.IsZero() {
		ri.now = s.sessions.Now()
	}
	return ri.now
}

type infoKey struct{}

func info(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// noteError records err for the access log line; the browser never sees it.
func noteError(r *http.Request, err error) {
	info(r).err = err
}

// NoteUpstream records the upstream's status for r's access log line.
func NoteUpstream(r *http.Request, code int) { info(r).upstream = code }

// RequestID returns the request ID moat assigned to ctx's request.
func RequestID(ctx context.Context) string {
	if i, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return i.id
	}
	return ""
}

// observed is what observe allocates per request, in one piece: the access
// log's facts, the status-recording writer, the proxy's state for the
// request, and the context that carries the facts and the state.
type observed struct {
	info reqInfo
	sw   statusWriter
	fwd  proxy.State
	ctx  reqCtx
}

// reqCtx is the request's context below observe: its parent, with the
// request's reqInfo and proxy.State as values. Being part of observed, it
// costs no allocation of its own, and a proxied request needs no context
// and request copy to carry its access token (proxy.SetToken). Done, Err
// and Deadline are the parent's, so contexts derived from it are cancelled
// with the request as usual.
type reqCtx struct {
	context.Context
	o *observed
}

func (c *reqCtx) Value(key any) any {
	if _, ok := key.(infoKey); ok {
		return &c.o.info
	}
	if proxy.IsStateKey(key) {
		return &c.o.fwd
	}
	return c.Context.Value(key)
}

// observe assigns the request ID (a well-formed incoming X-Request-Id is
// kept, for tracing across hops) and writes one access log line.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o := &observed{info: reqInfo{id: r.Header.Get("X-Request-Id"), ip: s.limits.clientIP(r)}}
		ri, sw := &o.info, &o.sw
		id := r.Header["X-Request-Id"]
		if !validRequestID(ri.id) {
			ri.id = newRequestID()
			id = []string{ri.id}
			r.Header["X-Request-Id"] = id // forwarded upstream
		} else if len(id) != 1 {
			id = []string{ri.id}
		}
		// The request's slice, shared: neither side appends in place (a
		// one-element slice grows by copying) nor rewrites it.
		w.Header()["X-Request-Id"] = id
		sw.ResponseWriter = w
		if d := s.cfg.Server.WriteTimeout.D(); d > 0 && !proxy.IsUpgrade(r) { // a hijacked socket has no deadlines
			sw.deadline, sw.writeTimeout, sw.perStream = writeDeadliner(w), d, r.ProtoMajor >= 2
		}
		if sw.deadline != nil {
			// The rest of the response, flushed after the handler returns;
			// the server lifts this bound once the connection is idle
			// (gateway.NewHTTPServer).
			defer sw.bound()
		}
		o.ctx = reqCtx{Context: r.Context(), o: o}
		r2 := r.WithContext(&o.ctx)
		next.ServeHTTP(sw, r2)
		end := time.Now()
		elapsed := end.Sub(start)
		route := ri.route
		if route == "" {
			route = r2.Pattern // the ServeMux pattern: a bounded label
		}
		if route == "" {
			route = "other"
		}
		status := sw.Status()
		s.metrics.Request(route, r.Method, status, elapsed)
		level := slog.LevelInfo
		if ri.err != nil && status >= 500 {
			level = slog.LevelWarn
		}
		if !s.log.Enabled(r.Context(), level) {
			return
		}
		// The attributes live on the stack: LogAttrs copies them.
		var buf [12]slog.Attr
		attrs := append(buf[:0],
			slog.String("request_id", ri.id),
			slog.String("method", r.Method),
			slog.String("path", s.mount+r.URL.Path),
			slog.String("client_ip", ri.ip),
			slog.Int("status", status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("duration", elapsed),
			slog.String("route", route),
		)
		if ri.upstream != 0 {
			attrs = append(attrs, slog.Int("upstream_status", ri.upstream))
		}
		if ri.session != "" {
			attrs = append(attrs, slog.String("session", ri.session.Short()))
		}
		if ri.sub != "" && s.cfg.Log.Subject {
			attrs = append(attrs, slog.String("sub", ri.sub))
		}
		if ri.err != nil {
			attrs = append(attrs, slog.String("error", ri.err.Error()))
		}
		if s.access != nil {
			// The same line, written without slog.Logger's record, caller
			// lookup and generic encoder (logbuf.Handler.Log).
			s.access.Log(r.Context(), end, level, "request", attrs...)
			return
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// newRequestID returns 96 random bits in hex. A request ID names a request
// in logs and traces and is no secret (a client may choose its own), so it
// comes from the runtime's generator (ChaCha8, seeded from the OS) rather
// than crypto/rand, at a sixth of the cost.
func newRequestID() string {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	var out [24]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}

// recoverer turns a panic into a logged 500 instead of a dropped connection.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "path", s.mount+r.URL.Path, "panic", fmt.Sprint(v))
			httperr.Write(w, errors.New("panic"))
		}()
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the headers every moat-generated answer carries.
// Proxied responses get them too unless the upstream set its own.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	hsts := s.public.Scheme == "https"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Content-Type-Options"] = []string{"nosniff"} // h.Set, without canonicalizing a canonical key
		if hsts {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		if strings.HasPrefix(r.URL.Path, "/auth/") {
			h.Set("Cache-Control", "no-store")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; form-action 'self'")
			// No window that opened an /auth page keeps a handle on it (a
			// popup-driven silent login cannot read the callback).
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status and size of a response, and bounds
// each write to the client by writeTimeout. Unwrap lets
// http.ResponseController reach Flush and Hijack on the real writer, so
// streaming and upgrades pass through.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	// deadline bounds each write or flush by writeTimeout; between writes
	// the bound is lifted (HTTP/2, where a stream is reset when its
	// deadline passes, writing or not) or outlives the write harmlessly
	// (HTTP/1, where a deadline only stops a write in progress).
	deadline     deadliner
	writeTimeout time.Duration
	perStream    bool      // HTTP/2: lift the bound after each write
	boundAt      time.Time // HTTP/1: when the bound was last set
}

type deadliner interface{ SetWriteDeadline(time.Time) error }

// writeDeadliner returns what sets w's write deadline, unwrapping w as
// http.ResponseController does; nil for a writer that has none (a test's
// ResponseRecorder).
func writeDeadliner(w http.ResponseWriter) deadliner {
	for {
		switch t := w.(type) {
		case deadliner:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// bound sets the write deadline for the next write. On HTTP/1 a bound
// less than a quarter of writeTimeout old is kept, so every write still
// has at least ¾ of writeTimeout and a response written in a few writes
// costs one deadline update, not two per write (each is a runtime timer
// change under a lock).
func (w *statusWriter) bound() {
	if w.deadline == nil {
		return
	}
	now := time.Now()
	if !w.perStream && !w.boundAt.IsZero() && now.Sub(w.boundAt) < w.writeTimeout/4 {
		return
	}
	w.deadline.SetWriteDeadline(now.Add(w.writeTimeout))
	w.boundAt = now
}

// unbound lifts an HTTP/2 stream's bound after a write.
func (w *statusWriter) unbound() {
	if w.deadline != nil && w.perStream {
		w.deadline.SetWriteDeadline(time.Time{})
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 200 { // final: only recorded here, written with the body
		if w.status == 0 {
			w.status = code
		}
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.bound() // an interim answer (1xx) is written at once
	w.ResponseWriter.WriteHeader(code)
	w.unbound()
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.bound()
	n, err := w.ResponseWriter.Write(b)
	w.unbound()
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	w.bound()
	http.NewResponseController(w.ResponseWriter).Flush()
	w.unbound()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// redirect answers 302 with a Location and no body. http.Redirect would
// echo the URL in an HTML body, and some of moat's targets (the end-session
// URL with its id_token_hint) must not sit in a body script could read.
func redirect(w http.ResponseWriter, target string) {
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusFound)
}

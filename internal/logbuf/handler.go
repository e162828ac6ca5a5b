package logbuf

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Handler is slog's own JSON or text handler writing to a Writer, with a
// fast path for lines of plain attributes: Log writes the bytes Handle
// would, without building a slog.Record or going through slog.Logger (which
// captures a caller PC and grows the record for more than five attributes).
// It exists for the access log line, written once per request; every other
// line goes through slog. WithAttrs and WithGroup return slog's handler.
type Handler struct {
	slog.Handler // slog.NewJSONHandler or slog.NewTextHandler on w

	w    *Writer
	json bool
	// fast: the options leave the output to the built-in format (no
	// AddSource, no ReplaceAttr), so Log may write it itself.
	fast bool
}

// NewJSONHandler returns slog.NewJSONHandler(w, opts) with the fast path.
// Durations are written as strings with their unit ("1.5ms", "30s"), as in
// text, not as a bare count of nanoseconds nobody reads right.
func NewJSONHandler(w *Writer, opts *slog.HandlerOptions) *Handler {
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	user := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		if user != nil {
			a = user(groups, a)
		}
		return a
	}
	return newHandler(slog.NewJSONHandler(w, &o), w, true, opts)
}

// NewTextHandler returns slog.NewTextHandler(w, opts) with the fast path.
func NewTextHandler(w *Writer, opts *slog.HandlerOptions) *Handler {
	return newHandler(slog.NewTextHandler(w, opts), w, false, opts)
}

func newHandler(h slog.Handler, w *Writer, json bool, opts *slog.HandlerOptions) *Handler {
	fast := opts == nil || (!opts.AddSource && opts.ReplaceAttr == nil)
	return &Handler{Handler: h, w: w, json: json, fast: fast}
}

// Log writes a record of level, msg and attrs stamped t, as Handle would
// write it. Like Handle, it does not check Enabled. Attributes other than
// strings, integers, booleans and durations with a non-empty key, or a time
// outside the years 0–9999, take slog's own path, whose output they are.
func (h *Handler) Log(ctx context.Context, t time.Time, level slog.Level, msg string, attrs ...slog.Attr) error {
	if !h.fast || !plain(t, attrs) {
		r := slog.NewRecord(t, level, msg, 0)
		r.AddAttrs(attrs...)
		return h.Handler.Handle(ctx, r)
	}
	bp := linePool.Get().(*[]byte)
	b := h.appendLine((*bp)[:0], t, level, msg, attrs)
	_, err := h.w.Write(b)
	if cap(b) <= maxPooledLine {
		*bp = b
		linePool.Put(bp)
	}
	return err
}

const maxPooledLine = 16 << 10

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// plain reports whether Log can format t and attrs itself.
func plain(t time.Time, attrs []slog.Attr) bool {
	if y := t.Year(); t.IsZero() || y < 0 || y >= 10000 {
		return false
	}
	for _, a := range attrs {
		if a.Key == "" {
			return false
		}
		switch a.Value.Kind() {
		case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool, slog.KindDuration:
		default:
			return false
		}
	}
	return true
}

// appendLine appends the line slog's commonHandler.handle writes for a
// record without source, groups or preformatted attributes.
func (h *Handler) appendLine(b []byte, t time.Time, level slog.Level, msg string, attrs []slog.Attr) []byte {
	t = t.Round(0) // as slog does: no monotonic reading
	if h.json {
		b = append(b, `{"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","level":`...)
		b = appendJSONString(b, level.String())
		b = append(b, `,"msg":`...)
		b = appendJSONString(b, msg)
		for _, a := range attrs {
			b = append(b, ',')
			b = appendJSONString(b, a.Key)
			b = append(b, ':')
			b = h.appendValue(b, a.Value)
		}
		return append(b, "}\n"...)
	}
	b = append(b, "time="...)
	b = appendRFC3339Millis(b, t)
	b = append(b, " level="...)
	b = appendTextString(b, level.String())
	b = append(b, " msg="...)
	b = appendTextString(b, msg)
	for _, a := range attrs {
		b = append(b, ' ')
		b = appendTextString(b, a.Key)
		b = append(b, '=')
		b = h.appendValue(b, a.Value)
	}
	return append(b, '\n')
}

// appendValue appends one of plain's kinds as the handler's format does:
// strings quoted by its rules, durations as time.Duration.String (quoted
// in JSON).
func (h *Handler) appendValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		if h.json {
			return appendJSONString(b, v.String())
		}
		return appendTextString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		if h.json {
			return appendJSONString(b, v.Duration().String())
		}
		return append(b, v.Duration().String()...)
	}
	return b
}

// appendRFC3339Millis is slog's text time format.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// As slog does: RFC3339Nano trims trailing zeros, so add a tenth of a
	// millisecond to keep four digits after the point, then drop the
	// fourth.
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// appendJSONString appends s as a JSON string the way slog does: no HTML
// escaping, control characters as \n, \r, \t or \u00XX, invalid UTF-8 as
// \ufffd, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safeSet[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, '\\')
			switch c {
			case '\\', '"':
				b = append(b, c)
			case '\n':
				b = append(b, 'n')
			case '\r':
				b = append(b, 'r')
			case '\t':
				b = append(b, 't')
			default:
				b = append(b, 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTextString appends s as slog's text handler does: as it is, or
// Go-quoted when it is empty or holds a space, '=', a quote, a control or
// non-printable character, or invalid UTF-8.
func appendTextString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c == ' ' || c == '=' || !safeSet[c]) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

const hex = "0123456789abcdef"

// safeSet is slog's: the ASCII characters that need no escaping inside a
// JSON string, which are all but control characters, '"' and '\\' (HTML
// characters and DEL included).
var safeSet = func() (s [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		s[c] = c != '"' && c != '\\'
	}
	return s
}()

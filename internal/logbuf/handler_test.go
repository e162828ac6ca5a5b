package logbuf

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// both returns what Handler.Log writes and what slog's own handler writes
// for the same record (slog.Logger.LogAttrs builds exactly this record,
// stamped with time.Now).
func both(t testing.TB, json bool, opts *slog.HandlerOptions, at time.Time, level slog.Level, msg string, attrs ...slog.Attr) (fast, want string) {
	t.Helper()
	var out bytes.Buffer
	w := New(&out, 1, time.Hour) // maxBytes 1: every line goes straight through
	defer w.Close()
	h := NewTextHandler(w, opts)
	if json {
		h = NewJSONHandler(w, opts)
	}
	if err := h.Log(context.Background(), at, level, msg, attrs...); err != nil {
		t.Fatal(err)
	}
	fast = out.String()
	out.Reset()
	r := slog.NewRecord(at, level, msg, 0)
	r.AddAttrs(attrs...)
	if err := h.Handler.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return fast, out.String()
}

// tricky are strings that JSON or the text format must escape or quote.
var tricky = []string{
	"", " ", "plain", "/api/item", "a b", "a=b", `quote"d`, `back\slash`, "new\nline", "cr\rlf", "tab\there",
	"nul\x00byte", "bell\x07", "esc\x1b[31m", "del\x7f", "<script>&amp;</script>", "'single'",
	"caf\u00e9", "\u65e5\u672c", "emoji \U0001F600", "line\u2028sep", "para\u2029sep", "nbsp\u00a0", "zw\u200bsp",
	"bad\xffutf8", "\xc3", "half\xe2\x82", "surrogate\xed\xa0\x80", "\ufffd", "bidi\u202etxet",
	"ctl\u0085next", "soft\u00adhyphen", strings.Repeat("long ", 400),
}

func TestLogMatchesSlog(t *testing.T) {
	times := []time.Time{
		time.Date(2026, 11, 27, 5, 55, 30, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 5*3600+1800)),
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("y", -7*3600)),
		time.Now(), // with a monotonic reading
	}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2, slog.LevelDebug - 1}
	for _, json := range []bool{true, false} {
		for i, s := range tricky {
			at, level := times[i%len(times)], levels[i%len(levels)]
			attrs := []slog.Attr{
				slog.String("request_id", s), slog.String("method", "GET"), slog.String("path", s),
				slog.String("client_ip", "127.0.0.1"), slog.Int("status", 200+i), slog.Int64("bytes", int64(-i)),
				slog.Duration("duration", time.Duration(i)*1234567*time.Nanosecond), slog.String("route", "/api/"),
				slog.Uint64("big", 1<<63+uint64(i)), slog.Bool("flag", i%2 == 0), slog.String(s+"key", "v"),
				slog.String("error", s),
			}
			fast, want := both(t, json, nil, at, level, s, attrs...)
			if fast != want {
				t.Errorf("json=%v, %q:\n got %s\nwant %s", json, s, fast, want)
			}
		}
		// Every single byte, and every rune up to U+3000, as a value and a key.
		for c := range 256 {
			s := "x" + string([]byte{byte(c)}) + "y"
			if fast, want := both(t, json, nil, times[0], slog.LevelInfo, "m", slog.String(s, s)); fast != want {
				t.Errorf("json=%v, byte %#x:\n got %s\nwant %s", json, c, fast, want)
			}
		}
		for r := rune(0); r < 0x3000; r++ {
			s := string(r)
			if fast, want := both(t, json, nil, times[0], slog.LevelWarn, s, slog.String("v", s)); fast != want {
				t.Errorf("json=%v, rune %U:\n got %s\nwant %s", json, r, fast, want)
			}
		}
	}
}

// Attributes the fast path does not format, a zero or out-of-range time,
// and options that change the output all take slog's own path.
func TestLogFallsBackToSlog(t *testing.T) {
	at := time.Date(2026, 11, 27, 5, 55, 30, 1, time.UTC)
	cases := [][]slog.Attr{
		{slog.Any("err", errors.New("boom"))},
		{slog.Float64("f", 1.5)},
		{slog.Time("t", at)},
		{slog.Group("g", slog.String("a", "b"))},
		{slog.Any("m", map[string]int{"a": 1})},
		{slog.String("", "empty key")},
		{{}},
		{slog.Any("lv", slog.StringValue("x"))},
	}
	for _, json := range []bool{true, false} {
		for _, attrs := range cases {
			fast, want := both(t, json, nil, at, slog.LevelInfo, "m", attrs...)
			if fast != want {
				t.Errorf("json=%v %v:\n got %s\nwant %s", json, attrs, fast, want)
			}
		}
		for _, bad := range []time.Time{{}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
			if fast, want := both(t, json, nil, bad, slog.LevelInfo, "m", slog.String("a", "b")); fast != want {
				t.Errorf("json=%v %v:\n got %s\nwant %s", json, bad, fast, want)
			}
		}
		opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "path" {
				a.Value = slog.StringValue("replaced")
			}
			return a
		}}
		if fast, want := both(t, json, opts, at, slog.LevelInfo, "m", slog.String("path", "/x")); fast != want || !strings.Contains(fast, "replaced") {
			t.Errorf("json=%v with ReplaceAttr:\n got %s\nwant %s", json, fast, want)
		}
		opts = &slog.HandlerOptions{AddSource: true}
		if fast, want := both(t, json, opts, at, slog.LevelInfo, "m", slog.String("a", "b")); fast != want {
			t.Errorf("json=%v with AddSource:\n got %s\nwant %s", json, fast, want)
		}
	}
}

func FuzzLogMatchesSlog(f *testing.F) {
	for _, s := range tricky {
		f.Add(s, s, int64(len(s)), true)
	}
	f.Fuzz(func(t *testing.T, key, value string, n int64, json bool) {
		if key == "" {
			key = "k"
		}
		at := time.Unix(0, n).UTC()
		fast, want := both(t, json, nil, at, slog.Level(n%16), value,
			slog.String(key, value), slog.Int64("n", n), slog.Duration("d", time.Duration(n)))
		if fast != want {
			t.Errorf("json=%v %q=%q:\n got %s\nwant %s", json, key, value, fast, want)
		}
		if json && !utf8.ValidString(fast) {
			t.Errorf("invalid UTF-8 in a JSON line: %q", fast)
		}
	})
}

func BenchmarkAccessLine(b *testing.B) {
	attrs := []slog.Attr{
		slog.String("request_id", "617c11b847a33392844951da"), slog.String("method", "GET"), slog.String("path", "/api/item"),
		slog.String("client_ip", "127.0.0.1"), slog.Int("status", 200), slog.Int64("bytes", 1024),
		slog.Duration("duration", 512345*time.Nanosecond), slog.String("route", "/api/"), slog.Int("upstream_status", 200),
		slog.String("session", "0123456789abcdef"),
	}
	w := New(discard{}, 64<<10, time.Hour)
	defer w.Close()
	h := NewJSONHandler(w, nil)
	b.Run("slog", func(b *testing.B) {
		log := slog.New(h.Handler)
		b.ReportAllocs()
		for b.Loop() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.Log(context.Background(), time.Now(), slog.LevelInfo, "request", attrs...)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// In JSON, durations carry their unit as strings ("1.5ms"), on the fast
// path (Log) and on slog's (Info, groups included), never bare nanoseconds.
func TestJSONDurationsCarryTheirUnit(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, 1<<20, time.Hour)
	h := NewJSONHandler(w, &slog.HandlerOptions{})
	h.Log(context.Background(), time.Now(), slog.LevelInfo, "access", slog.Duration("duration", 1500*time.Microsecond))
	slog.New(h).Info("shutting down", "grace", 30*time.Second, slog.Group("g", slog.Duration("d", time.Minute)))
	w.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", out.String())
	}
	for i, want := range []string{`"duration":"1.5ms"`, `"grace":"30s","g":{"d":"1m0s"}`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %s, want %s", i, lines[i], want)
		}
	}
}

package logbuf

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestBatchesAndKeepsLinesWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &lockedBuffer{}
		w := New(out, 1024, 100*time.Millisecond)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 100 {
					fmt.Fprintf(w, "goroutine %d line %03d\n", g, i)
				}
			})
		}
		wg.Wait()
		time.Sleep(150 * time.Millisecond) // the interval flush
		synctest.Wait()
		got, writes := out.snapshot()
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != 400 {
			t.Fatalf("%d lines, want 400", len(lines))
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, "goroutine ") || len(l) != len("goroutine 0 line 000") {
				t.Fatalf("a line was torn: %q", l)
			}
		}
		if writes > 20 {
			t.Errorf("%d writes for 400 lines: not batched", writes)
		}
		w.Close()
	})
}

func TestCloseFlushes(t *testing.T) {
	out := &lockedBuffer{}
	w := New(out, 1<<16, time.Hour)
	fmt.Fprintln(w, "last words")
	w.Close()
	if got, _ := out.snapshot(); got != "last words\n" {
		t.Errorf("after Close: %q", got)
	}
	w.Close() // idempotent
}

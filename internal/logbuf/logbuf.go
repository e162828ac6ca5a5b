// Package logbuf batches log output: an access log line per request would
// otherwise cost a write(2) per request, a large share of a proxy hop. Lines
// are gathered in memory and written together when enough have piled up or
// a short interval has passed, so at most that interval of logs is lost if
// the process dies.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Writer is an io.Writer that batches writes to an underlying writer. It is
// safe for concurrent use; every Write of a whole line stays whole.
type Writer struct {
	out      io.Writer
	maxBytes int

	mu   sync.Mutex
	buf  []byte
	err  error
	stop chan struct{}
	done chan struct{}
}

// New batches writes to out, flushing when maxBytes are buffered and every
// interval. Close flushes and stops the background flusher.
func New(out io.Writer, maxBytes int, interval time.Duration) *Writer {
	w := &Writer{out: out, maxBytes: maxBytes, buf: make([]byte, 0, maxBytes), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop(interval)
	return w
}

// Write buffers p. It reports an earlier write error of the underlying
// writer, once.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf)+len(p) > w.maxBytes {
		w.flushLocked()
	}
	if len(p) >= w.maxBytes { // too big to batch: straight through
		_, err := w.out.Write(p)
		return len(p), err
	}
	w.buf = append(w.buf, p...)
	err := w.err
	w.err = nil
	return len(p), err
}

// Flush writes what is buffered.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

func (w *Writer) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	if _, err := w.out.Write(w.buf); err != nil {
		w.err = err
	}
	w.buf = w.buf[:0]
}

func (w *Writer) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.Flush()
		}
	}
}

// Close stops the flusher and writes what is left. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.Flush()
	return nil
}

package proxy

import "testing"

// TestBufferPool: every buffer handed out is 32 KiB, whatever length it
// was put back with, and one too small to hold that is dropped, not
// handed out.
func TestBufferPool(t *testing.T) {
	var p BufferPool
	for i := range 100 {
		b := p.Get()
		if len(b) != bufferSize {
			t.Fatalf("Get %d: %d bytes, want %d", i, len(b), bufferSize)
		}
		p.Put(b[:i]) // httputil may hand back a shorter slice of it
		p.Put(make([]byte, i))
	}
}

// Package tcprelay is a TCP relay for tests: it sits between a client and a
// real server (Redis, PostgreSQL) on 127.0.0.1 and can break the
// connections through it the way a server restart, a failover or a load
// balancer's idle timeout does, so that tests can prove how a client
// recovers.
package tcprelay

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay accepts connections on Addr and copies bytes both ways to the
// target. It is safe for concurrent use.
type Relay struct {
	ln     net.Listener
	target string

	refusing atomic.Bool
	muted    atomic.Bool
	accepted atomic.Int64

	mu     sync.Mutex
	conns  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

type pair struct{ client, server net.Conn }

func (p *pair) close() {
	p.client.Close()
	p.server.Close()
}

// New starts a relay on a free port of 127.0.0.1 to target (host:port).
func New(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, conns: map[*pair]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Via starts a relay to the host:port of rawURL (redis://…, postgres://…)
// that closes when t ends, and returns rawURL with the relay in its place.
func Via(t testing.TB, rawURL string) (string, *Relay) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Port() == "" {
		t.Fatalf("tcprelay: %q names no host:port to relay to", rawURL)
	}
	r, err := New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	u.Host = r.Addr()
	return u.String(), r
}

// Addr is the relay's address, host:port.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Target is the address the relay forwards to.
func (r *Relay) Target() string { return r.target }

func (r *Relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if r.refusing.Load() {
			c.Close()
			continue
		}
		r.wg.Add(1)
		go r.relay(c)
	}
}

func (r *Relay) relay(c net.Conn) {
	defer r.wg.Done()
	s, err := net.Dial("tcp", r.target)
	if err != nil {
		c.Close()
		return
	}
	p := &pair{client: c, server: s}
	r.mu.Lock()
	if r.closed || r.refusing.Load() {
		r.mu.Unlock()
		p.close()
		return
	}
	r.conns[p] = struct{}{}
	r.accepted.Add(1)
	r.mu.Unlock()

	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(s, c)
		done <- struct{}{}
	}()
	go func() {
		// By hand rather than io.Copy, to drop replies while muted.
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 && !r.muted.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done // either side gone: tear down both
	p.close()
	<-done
	r.mu.Lock()
	delete(r.conns, p)
	r.mu.Unlock()
}

// Cut closes every live connection through the relay, both ways, as a
// server restart would. New connections are still accepted unless Refuse
// was called.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.conns {
		p.close()
	}
}

// Mute makes the relay drop what the server sends until Unmute, while the
// client's requests still reach it: with Cut, it makes a command that the
// server ran but whose reply the client never saw.
func (r *Relay) Mute() { r.muted.Store(true) }

// Unmute undoes Mute.
func (r *Relay) Unmute() { r.muted.Store(false) }

// Refuse makes the relay close every new connection at once (the target
// is down); live connections stay until Cut.
func (r *Relay) Refuse() { r.refusing.Store(true) }

// Accept undoes Refuse.
func (r *Relay) Accept() { r.refusing.Store(false) }

// Live is the number of connections currently relayed.
func (r *Relay) Live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Accepted is the number of connections relayed since New, so a test can
// see that a client reconnected.
func (r *Relay) Accepted() int64 { return r.accepted.Load() }

// Close stops listening, cuts every connection and waits for the relay's
// goroutines.
func (r *Relay) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for p := range r.conns {
		p.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Silent is a server that accepts connections, reads what they send and
// never answers, as a hung server or a dead host behind a firewall that
// still completes the handshake does: it proves a client's own timeouts.
type Silent struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// NewSilent starts a Silent server on a free port of 127.0.0.1.
func NewSilent() (*Silent, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Silent{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns = append(s.conns, c)
			s.wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
			s.mu.Unlock()
		}
	})
	return s, nil
}

// Addr is the server's address, host:port.
func (s *Silent) Addr() string { return s.ln.Addr().String() }

// Close stops listening, closes every accepted connection and waits for
// the server's goroutines.
func (s *Silent) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

package tcprelay

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader) error {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		t.Fatalf("echo = %q", line)
	}
	return nil
}

func waitLive(t *testing.T, r *Relay, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.Live() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Live() = %d, want %d", r.Live(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRelay(t *testing.T) {
	r, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if err := roundTrip(t, c, br); err != nil {
		t.Fatal(err)
	}
	waitLive(t, r, 1)

	// Cut: the client sees the connection end.
	r.Cut()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read after Cut succeeded")
	}
	waitLive(t, r, 0)

	// A new connection works after a cut.
	c2, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(t, c2, bufio.NewReader(c2)); err != nil {
		t.Fatal(err)
	}

	// Mute: requests arrive, replies are dropped.
	r.Mute()
	c2.SetDeadline(time.Now().Add(200 * time.Millisecond))
	c2.Write([]byte("lost\n"))
	if _, err := bufio.NewReader(c2).ReadByte(); err == nil {
		t.Fatal("a reply came through a muted relay")
	}
	r.Unmute()
	c2.Close()
	c2, err = net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(t, c2, bufio.NewReader(c2)); err != nil {
		t.Fatalf("after Unmute: %v", err)
	}

	// Refuse: new connections are closed at once; live ones stay.
	r.Refuse()
	c3, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(t, c3, bufio.NewReader(c3)); err == nil {
		t.Fatal("round trip through a refusing relay succeeded")
	}
	if err := roundTrip(t, c2, bufio.NewReader(c2)); err != nil {
		t.Fatalf("live connection broken by Refuse: %v", err)
	}

	r.Accept()
	c4, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if err := roundTrip(t, c4, bufio.NewReader(c4)); err != nil {
		t.Fatalf("after Accept: %v", err)
	}
	if got := r.Accepted(); got != 4 {
		t.Fatalf("Accepted() = %d, want 4", got)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Live() != 0 {
		t.Fatalf("Live() after Close = %d", r.Live())
	}
}

// TestSilent: a client connects and writes, and hears nothing until its
// own deadline; Close ends the connection.
func TestSilent(t *testing.T) {
	s, err := NewSilent()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [1]byte
	if n, err := c.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read from a silent server = %d, %v; want a timeout", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(b[:]); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after Close = %v; want the connection closed", err)
	}
}

package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// RunConnectionCut checks that a store survives the loss of its
// connections (a server restart, a failover, a load balancer's idle
// timeout): cut must break every connection between s and its server, and
// the server stays up. Before each operation that a user's request makes,
// cut is called, and the operation must still succeed, with the result it
// would have had without the cut (issue 13 item 17: a dropped connection
// costs no user request). Each operation is tried after several cuts, both
// at once after the cut and after the client had time to notice it.
func RunConnectionCut(t *testing.T, s session.Store, cut func()) {
	t.Helper()
	ctx := t.Context()
	const ttl = time.Minute
	sub := random("sub")
	type step struct {
		name string
		fn   func(t *testing.T) error
	}
	for round := range 6 {
		pause := time.Duration(0)
		if round%2 == 1 {
			pause = 50 * time.Millisecond // the client's reader has seen EOF
		}
		sid := random("sid")
		sess := session.NewID().Key()
		txn := session.NewID().Key()
		var ver uint64
		steps := []step{
			{"Set (session create)", func(t *testing.T) (err error) {
				ver, err = s.Set(ctx, sess, session.Record{Data: []byte("v1"), Subject: sub, SID: sid}, ttl)
				return err
			}},
			{"Get (session read)", func(t *testing.T) error {
				r, err := s.Get(ctx, sess)
				if err == nil && (r.Version != ver || string(r.Data) != "v1") {
					t.Errorf("Get = %q v%d, want v1 v%d", r.Data, r.Version, ver)
				}
				return err
			}},
			{"CompareAndSwap (session write)", func(t *testing.T) error {
				v, err := s.CompareAndSwap(ctx, sess, ver, session.Record{Data: []byte("v2"), Subject: sub, SID: sid}, ttl)
				if err == nil {
					ver = v
				}
				return err
			}},
			{"Get after CompareAndSwap", func(t *testing.T) error {
				r, err := s.Get(ctx, sess)
				if err == nil && (r.Version != ver || string(r.Data) != "v2") {
					t.Errorf("Get = %q v%d, want v2 v%d", r.Data, r.Version, ver)
				}
				return err
			}},
			{"CompareAndSwap create (login transaction save)", func(t *testing.T) error {
				_, err := s.CompareAndSwap(ctx, txn, 0, session.Record{Data: []byte("txn")}, ttl)
				return err
			}},
			{"Take (login transaction take)", func(t *testing.T) error {
				r, err := s.Take(ctx, txn)
				if err == nil && string(r.Data) != "txn" {
					t.Errorf("Take = %q, want txn", r.Data)
				}
				return err
			}},
			{"Take again finds nothing", func(t *testing.T) error {
				// A take that lost its connection cannot tell "nobody
				// has it" from "my lost command took it": it may answer
				// the outage (a replayed callback gets a 503), never the
				// record.
				_, err := s.Take(ctx, txn)
				if errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrUnavailable) {
					return nil
				}
				if err == nil {
					t.Error("a login transaction was taken twice")
				}
				return err
			}},
			{"Set (login transaction save)", func(t *testing.T) error {
				_, err := s.Set(ctx, txn, session.Record{Data: []byte("txn2")}, ttl)
				return err
			}},
			{"Take (second login transaction)", func(t *testing.T) error {
				_, err := s.Take(ctx, txn)
				return err
			}},
			{"ListBySubject (admin)", func(t *testing.T) error {
				m, err := s.ListBySubject(ctx, sub)
				if err == nil {
					if _, ok := m[sess]; !ok {
						t.Errorf("ListBySubject misses the session")
					}
				}
				return err
			}},
			{"Ping (readiness)", func(t *testing.T) error { return s.Ping(ctx) }},
			{"DeleteBy (back-channel logout)", func(t *testing.T) error {
				_, err := s.DeleteBy(ctx, "", sid)
				return err
			}},
			{"Get after DeleteBy", func(t *testing.T) error {
				_, err := s.Get(ctx, sess)
				if errors.Is(err, session.ErrNotFound) {
					return nil
				}
				if err == nil {
					t.Error("the session survived DeleteBy")
				}
				return err
			}},
			{"Set (new session)", func(t *testing.T) (err error) {
				_, err = s.Set(ctx, sess, session.Record{Data: []byte("v3")}, ttl)
				return err
			}},
			{"Delete (logout)", func(t *testing.T) error { return s.Delete(ctx, sess) }},
		}
		for _, st := range steps {
			cut()
			if pause > 0 {
				time.Sleep(pause)
			}
			if err := st.fn(t); err != nil {
				t.Fatalf("round %d, %s right after the connections were cut: %v", round, st.name, err)
			}
		}
	}
	// Nothing left behind.
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = s.DeleteBy(cctx, sub, "")
}

// Breaker is what RunLostReply needs of a relay between a store and its
// server (internal/tcprelay): drop the server's replies, and break every
// connection.
type Breaker interface {
	Mute()
	Unmute()
	Cut()
}

// RunLostReply checks the operations that must not be blindly repeated
// when the server ran a command but its reply was lost with the connection:
// a retried compare-and-swap must not report a conflict with its own write,
// and a take must never hand the same record out twice nor answer "not
// found" for a record nobody else took (it reports the outage instead).
func RunLostReply(t *testing.T, s session.Store, b Breaker) {
	t.Helper()
	ctx := t.Context()
	const ttl = time.Minute
	// lose runs op with the server's replies dropped, then cuts the
	// connections so that op sees them break after the server ran it.
	// warm runs op's kind of command once on a key nobody has, so that
	// op goes out on a live connection rather than one broken by the last
	// cut, and a client that prepares statements (pgx) has prepared it:
	// the muted command must be the one that runs, not its preparation.
	lose := func(warm func(), op func() error) error {
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		warm()
		b.Mute()
		errc := make(chan error, 1)
		go func() { errc <- op() }()
		time.Sleep(150 * time.Millisecond) // the command reaches the server
		b.Cut()
		b.Unmute()
		return <-errc
	}

	t.Run("CompareAndSwap", func(t *testing.T) {
		k := session.NewID().Key()
		v1, err := s.Set(ctx, k, session.Record{Data: []byte("v1")}, ttl)
		if err != nil {
			t.Fatal(err)
		}
		var v2 uint64
		err = lose(func() { _, _ = s.CompareAndSwap(ctx, session.NewID().Key(), 1, session.Record{}, ttl) }, func() (err error) {
			v2, err = s.CompareAndSwap(ctx, k, v1, session.Record{Data: randomBytes(64)}, ttl)
			return err
		})
		if err != nil {
			t.Fatalf("CompareAndSwap whose first reply was lost: %v; want its own write to count", err)
		}
		r, err := s.Get(ctx, k)
		if err != nil || r.Version != v2 {
			t.Fatalf("Get = v%d, %v; want v%d", r.Version, err, v2)
		}
		_ = s.Delete(ctx, k)
	})
	t.Run("CompareAndSwapCreate", func(t *testing.T) {
		k := session.NewID().Key()
		var v uint64
		err := lose(func() {
			k := session.NewID().Key()
			_, _ = s.CompareAndSwap(ctx, k, 0, session.Record{}, ttl)
			_ = s.Delete(ctx, k)
		}, func() (err error) {
			v, err = s.CompareAndSwap(ctx, k, 0, session.Record{Data: randomBytes(64)}, ttl)
			return err
		})
		if err != nil {
			t.Fatalf("create whose first reply was lost: %v; want its own write to count", err)
		}
		r, err := s.Get(ctx, k)
		if err != nil || r.Version != v {
			t.Fatalf("Get = v%d, %v; want v%d", r.Version, err, v)
		}
		_ = s.Delete(ctx, k)
	})
	t.Run("Take", func(t *testing.T) {
		k := session.NewID().Key()
		if _, err := s.Set(ctx, k, session.Record{Data: []byte("txn")}, ttl); err != nil {
			t.Fatal(err)
		}
		err := lose(func() { _, _ = s.Take(ctx, session.NewID().Key()) }, func() error {
			_, err := s.Take(ctx, k)
			return err
		})
		// The server took the record; the caller never got it. Either
		// answer but "not found" and a second copy is acceptable: the
		// honest one is the outage.
		if !errors.Is(err, session.ErrUnavailable) {
			t.Fatalf("Take whose reply was lost = %v; want ErrUnavailable (never not-found for a record nobody else took)", err)
		}
		_, err = s.Take(ctx, k)
		if err == nil {
			t.Fatal("second Take got the record: it was handed out twice")
		}
		if !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrUnavailable) {
			t.Fatalf("second Take = %v; want ErrNotFound (or ErrUnavailable after the cut)", err)
		}
	})
}

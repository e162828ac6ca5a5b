package storetest

import (
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/session"
)

// SweepFixture writes to s what a test of a backend's sweeper watches:
// four records that expire in a minute (two of alice's sessions, one of
// bob's, a login record without a subject) and bob's session with SID b2,
// which lives an hour. It returns b2's key: the one record, and the one
// entry of each index, that a sweep two minutes later must leave.
func SweepFixture(t *testing.T, s session.Store) session.Key {
	t.Helper()
	keep := session.NewID().Key()
	for _, w := range []struct {
		key session.Key
		rec session.Record
		ttl time.Duration
	}{
		{session.NewID().Key(), session.Record{Data: []byte("1"), Subject: "alice", SID: "a1"}, time.Minute},
		{session.NewID().Key(), session.Record{Data: []byte("2"), Subject: "alice", SID: "a2"}, time.Minute},
		{session.NewID().Key(), session.Record{Data: []byte("3"), Subject: "bob", SID: "b1"}, time.Minute},
		{session.NewID().Key(), session.Record{Data: []byte("login")}, time.Minute},
		{keep, session.Record{Data: []byte("4"), Subject: "bob", SID: "b2"}, time.Hour},
	} {
		if _, err := s.Set(t.Context(), w.key, w.rec, w.ttl); err != nil {
			t.Fatal(err)
		}
	}
	return keep
}

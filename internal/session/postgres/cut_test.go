package postgres

import (
	"testing"

	"github.com/moat-bff/moat/internal/session"
	"github.com/moat-bff/moat/internal/session/storetest"
	"github.com/moat-bff/moat/internal/tcprelay"
)

// relayedStore opens a store on schema of the test database through a
// tcprelay, so the test can cut its connections.
func relayedStore(t *testing.T, schema string) (*Store, *tcprelay.Relay) {
	t.Helper()
	relayed, r := tcprelay.Via(t, testURL(t))
	raw := withParams(t, relayed, "schema", schema, "timeout", "5s")
	s, err := Open(t.Context(), raw, Options{Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, r
}

// TestConnectionCut cuts every connection to PostgreSQL right before each
// operation a user's request makes; each must still succeed.
func TestConnectionCut(t *testing.T) {
	s, relay := relayedStore(t, freshSchema(t))
	storetest.RunConnectionCut(t, s, relay.Cut)
}

// TestLostReply: a statement PostgreSQL ran whose reply was lost with the
// connection.
func TestLostReply(t *testing.T) {
	s, relay := relayedStore(t, freshSchema(t))
	storetest.RunLostReply(t, s, relay)
}

// TestCoherentCache: issue 14 on a real PostgreSQL.
func TestCoherentCache(t *testing.T) {
	schema := freshSchema(t)
	open := func(t *testing.T) session.Store {
		return openStore(t, schema, Options{})
	}
	relayed := func(t *testing.T) (session.Store, storetest.Relay) {
		return relayedStore(t, schema)
	}
	storetest.RunCoherentCache(t, open, relayed)
}

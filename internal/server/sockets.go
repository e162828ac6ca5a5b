package server

import (
	"net/http"
	"sync"

	"github.com/moat-bff/moat/internal/httperr"
	"github.com/moat-bff/moat/internal/session"
)

// Sockets counts the WebSockets each session holds open on this replica,
// so that one session cannot tie up connections and upstream sockets
// without bound (server.websocket_max_per_session). It outlives a
// configuration reload: the gateway passes the same one to each Server.
type Sockets struct {
	mu   sync.Mutex
	open map[session.Key]int
}

// NewSockets returns an empty count.
func NewSockets() *Sockets { return &Sockets{open: map[session.Key]int{}} }

// acquire takes one of key's max slots; release gives it back. It reports
// false, taking nothing, when key holds max already.
func (s *Sockets) acquire(key session.Key, max int) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key] >= max {
		return nil, false
	}
	s.open[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.open[key]--; s.open[key] <= 0 {
			delete(s.open, key)
		}
	}, true
}

func tooManySockets() *httperr.Error {
	return httperr.New(http.StatusTooManyRequests, "too_many_websockets",
		"this session has too many WebSockets open; close one first", nil)
}

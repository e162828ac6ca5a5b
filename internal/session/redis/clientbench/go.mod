// Module clientbench compares the two Redis clients moat considered for its
// session store. It is a separate module so that the client moat did not
// choose stays out of moat's go.mod; `go test ./...` at the repository root
// does not enter it.
module github.com/moat-bff/moat/internal/session/redis/clientbench

go 1.26.8

require (
	github.com/redis/go-redis/v9 v9.23.0
	github.com/redis/rueidis v1.0.79
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

// Package redisstore is a session.Store on Redis (6.2 or later; 7 is what
// CI runs), so that any number of stateless moat replicas share sessions.
// It uses the github.com/redis/rueidis client; docs/stores.md says why.
//
// # URL
//
// Open takes one URL. Hosts without a port get 6379 (26379 for sentinels);
// the user name and password come from the userinfo and must be
// percent-encoded (":" "@" "/" "?" "#" "%").
//
//	redis://[user:password@]host[:port][/db]                  one server
//	rediss://[user:password@]host[:port][/db]                 the same over TLS
//	redis+sentinel://[user:password@]s1[:port],s2.../master[/db]
//	                                                          Sentinel: the sentinels' addresses,
//	                                                          then the master set name
//	rediss+sentinel://...                                     Sentinel, TLS to sentinels and servers
//	redis+cluster://[user:password@]seed1[:port],seed2...     Redis Cluster (database 0 only)
//	rediss+cluster://...                                      Redis Cluster over TLS
//
// Query parameters, all optional; any other is an error:
//
//	prefix=moat:          start of every key, so moat can share a database
//	timeout=1s            bound on dialling and on every round trip: an outage
//	                      must turn into a quick 503, not hung requests
//	dial_timeout=         bound on dialling alone (default: timeout)
//	ca_file=/path.pem     TLS only: trust only these CAs instead of the system roots
//	tls_server_name=name  TLS only: the name to verify in server certificates,
//	                      for servers reached by an IP address (Sentinel, Cluster)
//	sentinel_user=, sentinel_password=
//	                      Sentinel only: credentials for the sentinels
//	                      themselves; the userinfo is for the data servers
//
// The password is never logged and never appears in an error.
//
// # Keys and atomicity
//
// A record lives in {prefix}s:{key} as one string holding its version,
// Subject, SID and Data (record.go), with a native TTL (SET PX). Set,
// CompareAndSwap (including set-if-absent) and the guarded delete of
// DeleteBy are each one Lua script (EVALSHA, EVAL when the server lacks it)
// on that single key; Take is GETDEL and Delete is DEL, single commands.
// All of them are therefore atomic. A version is a random non-zero 63-bit
// number drawn for each write, and the write script refuses a version equal
// to the live one, so versions do not repeat even across delete and
// re-create.
//
// # Indexes
//
// DeleteBy and ListBySubject use a sorted set per subject, {prefix}sub:{sub},
// and per SID, {prefix}sid:{sid}, holding the keys of the records that carry
// them (only records with a Subject are indexed). Each entry is scored with a
// time, on the Redis server's clock, after which its record has surely
// expired (write time + ttl + one minute). A write adds its index entries
// before it writes the record, in a separate command: a crash in between
// leaves a stale entry, never a live session missing from the index, which a
// back-channel logout would fail to find.
//
// Index entries are hints. DeleteBy deletes a record only through a script
// that re-checks, atomically, that the record still carries the subject and
// SID asked for, and ListBySubject re-checks every record it reads. Entries
// whose score has passed are pruned on every index read and write, and a
// set's own TTL is at least that of its longest entry. An entry whose record
// was deleted or changed subject before it expired is skipped until then but
// not removed early: a write in flight adds its entry before its record, so
// "entry present, record missing" is also what a session being created looks
// like, and removing the entry would leave that session unindexed.
//
// # Cluster caveat
//
// Every script touches one key, so the store needs no hash tags and records
// spread over all slots. The price is that a record and its index entries
// usually live in different slots and cannot be updated in one atomic step:
// the ordering and re-checks above are what make that safe. DeleteBy and
// ListBySubject read one index and then fan out to the records' nodes. A
// prefix with a hash tag ("{moat}:") would put every key in one slot: it
// works, but one node then holds all sessions. The store uses this design
// in every mode, so the tests on a single server exercise the Cluster path;
// TestCluster also runs the conformance suite on a real three-node cluster,
// TestSentinel through a sentinel, and TestSentinelFailover follows a
// failover without losing a session.
//
// # Connection loss
//
// A connection that breaks under a command (a Redis restart, a failover, a
// load balancer's idle timeout) costs no user request: the command is tried
// again on a fresh connection (up to maxTries in all, since the client may
// hand out the broken connection once more before it notices). Only a
// broken connection is retried, never an answer from Redis nor a timeout.
// What runs twice must have the effect of once:
//
//   - GET, DEL, PING, the index scripts and DeleteBy's guarded delete are
//     idempotent. A DeleteBy whose reply was lost deletes the record all
//     the same but cannot report it.
//   - Set and CompareAndSwap retry with the same random 63-bit version and
//     the flag "retry": a live record carrying that version is this very
//     write, landed before the connection broke, and counts as success
//     instead of a conflict.
//   - Take (GETDEL) is not blindly retried: if its reply was lost it may
//     have taken the record. The store asks whether the record still
//     exists; if it does, the lost GETDEL never ran and one more is
//     exactly one take; if it does not, the store cannot tell who took it
//     and returns ErrUnavailable (a 503 that logs nobody out), never
//     ErrNotFound for a record nobody else took, nor the record twice.
//
// TestConnectionCut and TestLostReply prove this through a TCP relay that
// cuts the connections and drops replies.
//
// # Coherent session cache
//
// Store implements session.Invalidator (invalidate.go): a dedicated RESP3
// connection per node with CLIENT TRACKING ON BCAST, and a PING on each
// before a cached session is served.
//
// # Operating Redis for moat
//
//   - maxmemory-policy must be noeviction: an evicted index would hide
//     sessions from back-channel logout, an evicted record logs a user out.
//   - Without persistence a Redis restart logs every user out; that is safe.
//   - Index key names contain subjects and SIDs, the IdP's user
//     identifiers: treat key listings and MONITOR output as personal data.
//   - An ACL user needs: ~{prefix}* +get +getdel +del +evalsha +eval +ping
//     +hello +auth +client +select, plus, called from the scripts, +set
//     +type +getrange +strlen +time +zadd +zrange +zremrangebyscore +pttl
//     +pexpire; with Sentinel also +role (the client checks it reached the
//     primary), with Cluster also +cluster|slots +cluster|shards.
//
// If Redis is unreachable when Open runs, Open still returns a Store (every
// call fails with session.ErrUnavailable until Redis answers), so that moat
// starts and reports not-ready instead of crash-looping. A bad URL, bad
// credentials or a certificate that fails verification make Open fail.
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/moat-bff/moat/internal/session"
)

const (
	// indexMargin is added to a record's ttl for its index entries, so
	// that clock differences between nodes cannot drop an entry while its
	// record is still live.
	indexMargin = time.Minute
	// redialAfter is how long after a failed connection attempt calls fail
	// at once instead of trying again, so an outage costs no dial per
	// request.
	redialAfter = 500 * time.Millisecond
	// maxTries bounds the tries of a command whose connection broke under
	// it. A broken connection fails at once, and rueidis may hand it out
	// once more before it has noticed, so the second try is not always on
	// a fresh connection; the third is.
	maxTries = 3
	// maxDraws bounds the redraws of a version that equals the live one,
	// which happens once in 2^63 writes.
	maxDraws = 4
)

// Options configures a Store beyond what the URL says.
type Options struct {
	// Logger receives warnings: corrupted records and an unreachable Redis
	// at Open. nil means slog.Default().
	Logger *slog.Logger
}

// Store is a session.Store on Redis. It is safe for concurrent use; create
// it with Open and release it with Close.
type Store struct {
	cfg     config
	opt     rueidis.ClientOption
	log     *slog.Logger
	prefix  string
	timeout time.Duration

	client atomic.Pointer[clientRef] // nil until a connection attempt succeeds
	watch  watcher
	closed atomic.Bool

	mu       sync.Mutex // guards the fields below and the closing of client
	dialing  *attempt   // the connection attempt in progress, if any
	lastErr  error      // the last attempt's failure
	lastFail time.Time
}

// clientRef lets an interface value sit in an atomic.Pointer.
type clientRef struct{ c rueidis.Client }

// attempt is one run of rueidis.NewClient, which dials and cannot be
// interrupted; callers wait for it or for their context.
type attempt struct {
	done chan struct{}
	err  error
}

var _ session.Store = (*Store)(nil)

// errClosed is what the client lookup returns after Close.
var errClosed = errors.New("store is closed")

// Open parses rawURL (see the package documentation), connects and returns
// the Store. It fails on a malformed URL, and on answers that mean the
// configuration is wrong (credentials, database, certificate); when Redis is
// merely unreachable it logs a warning and returns a Store that keeps
// trying. ctx bounds the wait for the first connection.
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	if rawURL == "" {
		return nil, errNoURL
	}
	cfg, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		cfg:     cfg,
		log:     log,
		prefix:  cfg.prefix,
		timeout: cfg.timeout,
		opt: rueidis.ClientOption{
			InitAddress: cfg.addrs,
			Username:    cfg.username,
			Password:    cfg.password,
			SelectDB:    cfg.db,
			TLSConfig:   tc,
			ClientName:  "moat",
			Dialer:      net.Dialer{Timeout: cfg.dialTimeout},
			// A connection that does not answer within this is torn down
			// and redialled, so a half-dead server costs one timeout.
			ConnWriteTimeout: max(2*cfg.timeout, time.Second),
			// Client-side caching is not used yet; disabling it also skips
			// CLIENT TRACKING, which some managed Redis services refuse.
			DisableCache: true,
		},
	}
	switch cfg.mode {
	case modeStandalone:
		// No cluster probe; and rueidis then returns a client that redials
		// on use even when the first dial fails.
		s.opt.ForceSingleClient = true
	case modeSentinel:
		s.opt.Sentinel = rueidis.SentinelOption{
			MasterSet: cfg.master,
			Username:  cfg.sentinelUsername,
			Password:  cfg.sentinelPassword,
			TLSConfig: tc,
			Dialer:    net.Dialer{Timeout: cfg.dialTimeout},
		}
	case modeCluster:
		s.opt.ShuffleInit = true
	}

	s.mu.Lock()
	a := s.startAttempt()
	s.mu.Unlock()
	// Sentinel and Cluster dial their addresses one after the other: give
	// up waiting after a round, the attempt goes on in the background.
	wait := time.NewTimer(cfg.dialTimeout + cfg.timeout)
	defer wait.Stop()
	select {
	case <-a.done:
	case <-wait.C:
		log.Warn("redis session store: Redis slow to answer; still connecting, calls fail until it answers",
			"target", cfg.String())
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("redis store %s: %w", cfg, ctx.Err())
	}
	if a.err != nil {
		if fatal(a.err) {
			s.Close()
			return nil, fmt.Errorf("redis store %s: %w", cfg, a.err)
		}
		log.Warn("redis session store: Redis unreachable; retrying on use, calls fail until it answers",
			"target", cfg.String(), "err", a.err)
	}
	return s, nil
}

// startAttempt starts a connection attempt. s.mu must be held.
func (s *Store) startAttempt() *attempt {
	a := &attempt{done: make(chan struct{})}
	s.dialing = a
	go func() {
		c, err := rueidis.NewClient(s.opt)
		// With ForceSingleClient, rueidis returns a client along with a
		// dial error; it redials on use, so keep it unless the error
		// means the configuration is wrong.
		keep := c != nil && (err == nil || (s.cfg.mode == modeStandalone && !fatal(err)))
		s.mu.Lock()
		a.err = err
		if err != nil {
			s.lastErr, s.lastFail = err, time.Now()
		}
		if keep && !s.closed.Load() {
			s.client.Store(&clientRef{c})
			c = nil
		}
		s.dialing = nil
		s.mu.Unlock()
		if c != nil {
			c.Close()
		}
		close(a.done)
	}()
	return a
}

// fatal reports whether a connection error means the configuration is
// wrong rather than the server unreachable.
func fatal(err error) bool {
	if re, ok := rueidis.IsRedisErr(err); ok {
		return !re.IsLoading() && !re.IsTryAgain() && !re.IsClusterDown() &&
			!strings.HasPrefix(re.Error(), "MASTERDOWN") && !strings.HasPrefix(re.Error(), "BUSY")
	}
	var cve *tls.CertificateVerificationError
	return errors.As(err, &cve)
}

// conn returns the client, connecting first if no attempt has succeeded
// yet.
func (s *Store) conn(ctx context.Context) (rueidis.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	if r := s.client.Load(); r != nil {
		return r.c, nil
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, errClosed
	}
	if r := s.client.Load(); r != nil {
		s.mu.Unlock()
		return r.c, nil
	}
	a := s.dialing
	if a == nil {
		if s.lastErr != nil && time.Since(s.lastFail) < redialAfter {
			err := s.lastErr
			s.mu.Unlock()
			return nil, err
		}
		a = s.startAttempt()
	}
	s.mu.Unlock()
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case <-a.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("connecting: timed out")
	}
	if r := s.client.Load(); r != nil {
		return r.c, nil
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	return nil, a.err
}

// fail turns an error from the client into the Store contract's: the
// caller's context error if its context is done, otherwise ErrUnavailable
// with the cause as text (not wrapped, so that a timeout of ours is not
// mistaken for the caller's).
func (s *Store) fail(ctx context.Context, what op, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("redis store: %s: %w", what, cerr)
	}
	// The client may notice the caller's deadline a moment before ctx's
	// own timer does.
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return fmt.Errorf("redis store: %s: %w", what, context.DeadlineExceeded)
	}
	if errors.Is(err, errClosed) || errors.Is(err, rueidis.ErrClosing) && s.closed.Load() {
		return fmt.Errorf("redis store: %s: store is closed: %w", what, session.ErrUnavailable)
	}
	return fmt.Errorf("redis store: %s: %w: %v", what, session.ErrUnavailable, err)
}

// op names an operation in errors. Formatting it only on the error paths
// keeps the successful ones free of string building.
type op struct {
	name string
	key  session.Key
}

func (o op) String() string {
	if o.key == "" {
		return o.name
	}
	return o.name + " " + o.key.Short()
}

// roundTrip bounds one round trip to Redis by the configured timeout.
func (s *Store) roundTrip(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// lostConn reports whether err means the connection broke under the
// command (EOF, reset, a closed connection) rather than Redis answering, the
// deadline passing or the store closing: the one case where a second try, on
// a fresh connection, may succeed.
func (s *Store) lostConn(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || s.closed.Load() || rueidis.IsRedisNil(err) {
		return false
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, errClosed) {
		return false
	}
	// A failed dial or a timeout means Redis is down or hung, not that a
	// connection broke: trying again would only make the 503 slower.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// idempotent runs one round trip and, if the connection broke under it,
// runs it once more: only for commands that may run twice with the same
// effect as once. Each try has its own timeout.
func (s *Store) idempotent(ctx context.Context, try func(context.Context) rueidis.RedisResult) rueidis.RedisResult {
	res := s.once(ctx, try)
	for i := 1; i < maxTries && s.lostConn(ctx, res.Error()); i++ {
		res = s.once(ctx, try)
	}
	return res
}

func (s *Store) once(ctx context.Context, try func(context.Context) rueidis.RedisResult) rueidis.RedisResult {
	rctx, cancel := s.roundTrip(ctx)
	defer cancel()
	return try(rctx)
}

func (s *Store) recordKey(k session.Key) string { return s.prefix + "s:" + string(k) }
func (s *Store) subjectKey(sub string) string   { return s.prefix + "sub:" + sub }
func (s *Store) sidKey(sid string) string       { return s.prefix + "sid:" + sid }

// Get returns the live record under key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key session.Key) (session.Record, error) {
	what := op{"get", key}
	c, err := s.conn(ctx)
	if err != nil {
		return session.Record{}, s.fail(ctx, what, err)
	}
	res := s.idempotent(ctx, func(rctx context.Context) rueidis.RedisResult {
		return c.Do(rctx, c.B().Get().Key(s.recordKey(key)).Build())
	})
	return s.read(ctx, what, key, res)
}

// read decodes the reply to a GET or GETDEL. A value that is not a record
// of this store is logged and reported as not found: a corrupted entry must
// not take a user's requests down, only their session.
func (s *Store) read(ctx context.Context, what op, key session.Key, res rueidis.RedisResult) (session.Record, error) {
	str, err := res.ToString()
	switch {
	case rueidis.IsRedisNil(err):
		return session.Record{}, fmt.Errorf("redis store: %s: %w", what, session.ErrNotFound)
	case wrongType(err):
		s.corrupt(key, err)
		return session.Record{}, fmt.Errorf("redis store: %s: %w", what, session.ErrNotFound)
	case err != nil:
		return session.Record{}, s.fail(ctx, what, err)
	}
	r, err := decode(str)
	if err != nil {
		s.corrupt(key, err)
		return session.Record{}, fmt.Errorf("redis store: %s: %w", what, session.ErrNotFound)
	}
	return r, nil
}

func (s *Store) corrupt(key session.Key, err error) {
	s.log.Warn("redis session store: corrupted record treated as missing", "key", key.Short(), "err", err)
}

func wrongType(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), "WRONGTYPE")
}

// Set writes r under key unconditionally, with a new version.
func (s *Store) Set(ctx context.Context, key session.Key, r session.Record, ttl time.Duration) (uint64, error) {
	return s.write(ctx, "set", key, "*", r, ttl)
}

// CompareAndSwap writes r under key only if the live record's version is
// old, or, with old == 0, only if no record is live.
func (s *Store) CompareAndSwap(ctx context.Context, key session.Key, old uint64, r session.Record, ttl time.Duration) (uint64, error) {
	want := ""
	if old != 0 {
		want = versionBytes(old)
	}
	return s.write(ctx, "compare-and-swap", key, want, r, ttl)
}

// write runs writeScript after adding r's index entries.
func (s *Store) write(ctx context.Context, name string, key session.Key, want string, r session.Record, ttl time.Duration) (uint64, error) {
	what := op{name, key}
	if ttl <= 0 {
		return 0, fmt.Errorf("redis store: %s: ttl %v is not positive", what, ttl)
	}
	c, err := s.conn(ctx)
	if err != nil {
		return 0, s.fail(ctx, what, err)
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond // round up: never shorter than asked
	if r.Subject != "" {
		if err := s.addIndexes(ctx, c, key, r, int64(ms)); err != nil {
			return 0, s.fail(ctx, op{name + " (index)", key}, err)
		}
	}
	ttlArg := strconv.FormatInt(int64(ms), 10)
	for range maxDraws {
		v := newVersion()
		val, err := encode(v, r)
		if err != nil {
			return 0, fmt.Errorf("redis store: %s: %v", what, err)
		}
		run := func(retry string) rueidis.RedisResult {
			return s.once(ctx, func(rctx context.Context) rueidis.RedisResult {
				return writeScript.run(rctx, c, s.recordKey(key), want, rueidis.BinaryString(val), ttlArg, retry)
			})
		}
		res := run("")
		for i := 1; i < maxTries && s.lostConn(ctx, res.Error()); i++ {
			// The last try may have written before the connection broke:
			// the retry counts the record as written if it carries v, a
			// random 63-bit version nobody else draws.
			res = run("retry")
		}
		n, err := res.AsInt64()
		switch {
		case err != nil:
			return 0, s.fail(ctx, what, err)
		case n == writeOK:
			return v, nil
		case n == writeConflict:
			return 0, fmt.Errorf("redis store: %s: %w", what, session.ErrConflict)
		case n == writeMissing:
			return 0, fmt.Errorf("redis store: %s: %w", what, session.ErrNotFound)
		case n != writeSameVer:
			return 0, s.fail(ctx, what, fmt.Errorf("unexpected script result %d", n))
		}
	}
	return 0, s.fail(ctx, what, errors.New("no fresh version drawn"))
}

// addIndexes adds key to the index of r's subject and, if any, of its SID,
// in one pipeline, before the record itself is written.
func (s *Store) addIndexes(ctx context.Context, c rueidis.Client, key session.Key, r session.Record, ttlMS int64) error {
	keep := strconv.FormatInt(ttlMS+indexMargin.Milliseconds(), 10)
	calls := []call{{key: s.subjectKey(r.Subject), args: []string{string(key), keep}}}
	if r.SID != "" {
		calls = append(calls, call{key: s.sidKey(r.SID), args: []string{string(key), keep}})
	}
	var err error
	s.idempotent(ctx, func(rctx context.Context) rueidis.RedisResult {
		err = nil
		for _, res := range indexAddScript.runMulti(rctx, c, calls) {
			if err = res.Error(); err != nil {
				return res
			}
		}
		return rueidis.RedisResult{}
	})
	return err
}

// newVersion draws a random non-zero 63-bit version: 63 bits so that it
// also fits a signed 64-bit integer wherever a caller stores it.
func newVersion() uint64 {
	for {
		if v := rand.Uint64() >> 1; v != 0 {
			return v
		}
	}
}

// Take returns the live record under key and deletes it in one command
// (GETDEL), so of concurrent callers exactly one gets it.
func (s *Store) Take(ctx context.Context, key session.Key) (session.Record, error) {
	what := op{"take", key}
	c, err := s.conn(ctx)
	if err != nil {
		return session.Record{}, s.fail(ctx, what, err)
	}
	k := s.recordKey(key)
	getdel := func(rctx context.Context) rueidis.RedisResult { return c.Do(rctx, c.B().Getdel().Key(k).Build()) }
	res := s.once(ctx, getdel)
	for i := 1; i < maxTries && s.lostConn(ctx, res.Error()); i++ {
		// Not blindly retried: the lost GETDEL may have taken the record,
		// and a second one would then answer "not found", turning an
		// outage into a failed login. If the record is still there, the
		// first did not run, and a second GETDEL is exactly one take; if
		// it is gone, we cannot tell who took it and report the outage.
		ex := s.idempotent(ctx, func(rctx context.Context) rueidis.RedisResult {
			return c.Do(rctx, c.B().Exists().Key(k).Build())
		})
		n, err := ex.AsInt64()
		switch {
		case err != nil:
			return session.Record{}, s.fail(ctx, what, err)
		case n == 0:
			return session.Record{}, s.fail(ctx, what, fmt.Errorf("connection lost during GETDEL: %w", res.Error()))
		}
		res = s.once(ctx, getdel)
	}
	return s.read(ctx, what, key, res)
}

// Delete removes the record under key; a missing record is not an error.
// Its index entries stay until they expire (see the package doc).
func (s *Store) Delete(ctx context.Context, key session.Key) error {
	what := op{"delete", key}
	c, err := s.conn(ctx)
	if err != nil {
		return s.fail(ctx, what, err)
	}
	res := s.idempotent(ctx, func(rctx context.Context) rueidis.RedisResult {
		return c.Do(rctx, c.B().Del().Key(s.recordKey(key)).Build())
	})
	if err := res.Error(); err != nil {
		return s.fail(ctx, what, err)
	}
	return nil
}

// DeleteBy removes the live session records matching sub and sid (either
// may be empty, not both) and returns how many it removed. It reads the SID
// index when sid is given, the subject index otherwise, and deletes each
// candidate through a script that re-checks its subject and SID.
func (s *Store) DeleteBy(ctx context.Context, sub, sid string) ([]session.Key, error) {
	if sub == "" && sid == "" {
		return nil, fmt.Errorf("redis store: delete by: %w", session.ErrEmptySelector)
	}
	what := op{name: "delete by"}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	index := s.subjectKey(sub)
	if sid != "" {
		index = s.sidKey(sid)
	}
	members, err := s.candidates(ctx, c, index)
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	calls := make([]call, len(members))
	for i, m := range members {
		calls[i] = call{key: s.recordKey(session.Key(m)), args: []string{sub, sid}}
	}
	var removed []session.Key
	var firstErr error
	results := s.runMulti(ctx, deleteMatchScript, c, calls)
	// The guarded delete may run twice: a record it deleted on a lost
	// connection is then not reported, only gone.
	for range maxTries - 1 {
		var again []int
		for i, res := range results {
			if s.lostConn(ctx, res.Error()) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		retry := make([]call, len(again))
		for j, i := range again {
			retry[j] = calls[i]
		}
		for j, res := range s.runMulti(ctx, deleteMatchScript, c, retry) {
			results[again[j]] = res
		}
	}
	for i, res := range results {
		d, err := res.AsInt64()
		if err != nil {
			firstErr = firstOf(firstErr, err)
			continue
		}
		if d == 1 {
			removed = append(removed, session.Key(members[i]))
		}
	}
	if firstErr != nil {
		return removed, s.fail(ctx, what, firstErr)
	}
	return removed, nil
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// runMulti is sc.runMulti bounded by one round trip's timeout.
func (s *Store) runMulti(ctx context.Context, sc *script, c rueidis.Client, calls []call) []rueidis.RedisResult {
	rctx, cancel := s.roundTrip(ctx)
	defer cancel()
	return sc.runMulti(rctx, c, calls)
}

// candidates returns the live entries of an index.
func (s *Store) candidates(ctx context.Context, c rueidis.Client, index string) ([]string, error) {
	return s.idempotent(ctx, func(rctx context.Context) rueidis.RedisResult {
		return indexReadScript.run(rctx, c, index)
	}).AsStrSlice()
}

// ListBySubject returns sub's live session records, read through the
// subject index and re-checked one by one. An empty sub lists nothing.
func (s *Store) ListBySubject(ctx context.Context, sub string) (map[session.Key]session.Record, error) {
	what := op{name: "list by subject"}
	out := map[session.Key]session.Record{}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	if sub == "" {
		return out, nil
	}
	members, err := s.candidates(ctx, c, s.subjectKey(sub))
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	if len(members) == 0 {
		return out, nil
	}
	var results []rueidis.RedisResult
	for i := 0; i < maxTries && (i == 0 || slices.ContainsFunc(results, func(r rueidis.RedisResult) bool { return s.lostConn(ctx, r.Error()) })); i++ {
		// Reads: on a broken connection, run them all again (DoMulti
		// recycles the commands, so build them anew).
		cmds := make(rueidis.Commands, len(members))
		for i, m := range members {
			cmds[i] = c.B().Get().Key(s.recordKey(session.Key(m))).Build()
		}
		rctx, cancel := s.roundTrip(ctx)
		results = c.DoMulti(rctx, cmds...)
		cancel()
	}
	for i, res := range results {
		key := session.Key(members[i])
		r, err := s.read(ctx, what, key, res)
		switch {
		case errors.Is(err, session.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		case r.Subject == sub:
			out[key] = r
		}
	}
	return out, nil
}

// Ping sends PING, for /readyz.
func (s *Store) Ping(ctx context.Context) error {
	what := op{name: "ping"}
	c, err := s.conn(ctx)
	if err != nil {
		return s.fail(ctx, what, err)
	}
	res := s.idempotent(ctx, func(rctx context.Context) rueidis.RedisResult {
		return c.Do(rctx, c.B().Ping().Build())
	})
	if err := res.Error(); err != nil {
		return s.fail(ctx, what, err)
	}
	return nil
}

// Close closes the client, waiting for calls in flight. It is idempotent;
// afterwards every method returns ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	a := s.dialing
	r := s.client.Swap(nil)
	s.mu.Unlock()
	if a != nil {
		<-a.done // it sees closed and closes what it made
	}
	if r != nil {
		r.c.Close()
	}
	return nil
}

// String describes the store for logs, without the password.
func (s *Store) String() string {
	return fmt.Sprintf("redis %s store at %s (prefix %q)", s.cfg.mode, s.cfg, s.prefix)
}

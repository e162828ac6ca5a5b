package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// Every script touches exactly one key, declared in KEYS, so that it runs
// on Redis Cluster whatever slots the keys fall in.

// luaHeader checks a stored value the way decode does and returns its
// version (8 bytes) and the lengths of Subject and SID, or false for no
// record: missing, expired, of another type or corrupted. It reads only the
// header, not the whole value.
const luaHeader = `
local function header(key)
  if redis.call('TYPE', key)['ok'] ~= 'string' then return false end
  local h = redis.call('GETRANGE', key, 0, 16)
  if #h < 17 or string.byte(h, 1) ~= 1 then return false end
  local v = string.sub(h, 2, 9)
  if v == string.rep('\0', 8) then return false end
  local a, b, c, d, e, f, g, i = string.byte(h, 10, 17)
  local ls = ((a * 256 + b) * 256 + c) * 256 + d
  local lsid = ((e * 256 + f) * 256 + g) * 256 + i
  if 17 + ls + lsid > redis.call('STRLEN', key) then return false end
  return v, ls, lsid
end
`

// luaNow is the server's clock in milliseconds. Index scores use it so that
// replicas with skewed clocks cannot expire each other's entries early.
const luaNow = `
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// Results of writeScript.
const (
	writeOK       = 1
	writeConflict = 0
	writeMissing  = -1
	writeSameVer  = -2
)

// writeScript is Set and CompareAndSwap in one atomic step.
// KEYS[1] the record. ARGV[1] "*" to write unconditionally, "" to create
// only if no record is live, else the 8-byte version that must be live.
// ARGV[2] the encoded record carrying its new version. ARGV[3] ttl in ms.
// ARGV[4] "retry" when an earlier run of this very write may have landed
// before its connection broke: a live record carrying the new version is
// then that write (versions are random 63-bit numbers), and succeeds.
// A corrupted value counts as no record, so it can be overwritten.
var writeScript = newScript(luaHeader + `
local cur = header(KEYS[1])
local want = ARGV[1]
if ARGV[4] == 'retry' and cur and cur == string.sub(ARGV[2], 2, 9) then return 1 end
if want == '' then
  if cur then return 0 end
elseif want ~= '*' then
  if not cur then return -1 end
  if cur ~= want then return 0 end
end
if cur and cur == string.sub(ARGV[2], 2, 9) then return -2 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// deleteMatchScript deletes a record only if it is still a session (a
// non-empty Subject) with the given Subject and SID ("" matches any), so
// that DeleteBy never acts on a stale index entry. Returns 1 if deleted.
// KEYS[1] the record. ARGV[1] subject or "". ARGV[2] sid or "".
var deleteMatchScript = newScript(luaHeader + `
local v, ls, lsid = header(KEYS[1])
if not v or ls == 0 then return 0 end
local sub, sid = ARGV[1], ARGV[2]
if sub ~= '' and (#sub ~= ls or redis.call('GETRANGE', KEYS[1], 17, 16 + ls) ~= sub) then return 0 end
if sid ~= '' and (#sid ~= lsid or redis.call('GETRANGE', KEYS[1], 17 + ls, 16 + ls + lsid) ~= sid) then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// indexAddScript records that a record may carry this index's subject or
// SID. The index is a sorted set of record keys, each scored with a time
// (ms, server clock) after which the record has surely expired; ZADD GT
// keeps the latest such bound. Expired entries are dropped on the way, and
// the set lives as long as its longest entry.
// KEYS[1] the index. ARGV[1] the record key. ARGV[2] ms to keep the entry
// (the record's ttl plus a margin).
var indexAddScript = newScript(luaNow + `
local t, keep = now(), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', t))
redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', t + keep), ARGV[1])
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// indexReadScript drops an index's expired entries and returns the rest,
// the candidates that DeleteBy and ListBySubject then check one by one.
// KEYS[1] the index.
var indexReadScript = newScript(luaNow + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now()))
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// script is a Lua script run with EVALSHA, falling back to EVAL when the
// server does not have it (after a restart, a failover or SCRIPT FLUSH).
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// call is one run of a script on one key.
type call struct {
	key  string
	args []string
}

func (sc *script) evalsha(c rueidis.Client, cl call) rueidis.Completed {
	return c.B().Evalsha().Sha1(sc.sha).Numkeys(1).Key(cl.key).Arg(cl.args...).Build()
}

func (sc *script) eval(c rueidis.Client, cl call) rueidis.Completed {
	return c.B().Eval().Script(sc.src).Numkeys(1).Key(cl.key).Arg(cl.args...).Build()
}

// run runs sc once.
func (sc *script) run(ctx context.Context, c rueidis.Client, key string, args ...string) rueidis.RedisResult {
	cl := call{key: key, args: args}
	res := c.Do(ctx, sc.evalsha(c, cl))
	if noScript(res.Error()) {
		res = c.Do(ctx, sc.eval(c, cl))
	}
	return res
}

// runMulti pipelines several runs of sc. In a cluster they are sent to each
// key's node.
func (sc *script) runMulti(ctx context.Context, c rueidis.Client, calls []call) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(calls))
	for i, cl := range calls {
		cmds[i] = sc.evalsha(c, cl)
	}
	res := c.DoMulti(ctx, cmds...)
	var retry []int
	for i, r := range res {
		if noScript(r.Error()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		again := make(rueidis.Commands, len(retry))
		for j, i := range retry {
			again[j] = sc.eval(c, calls[i])
		}
		for j, r := range c.DoMulti(ctx, again...) {
			res[retry[j]] = r
		}
	}
	return res
}

func noScript(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && re.IsNoScript()
}

package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTable is the table used when the URL has no table= parameter.
const DefaultTable = "moat_sessions"

// DefaultTimeout bounds every store call when the URL has no timeout=
// parameter: during an outage moat must answer 503 quickly rather than hold
// requests until a load balancer gives up.
const DefaultTimeout = time.Second

// maxTableLen keeps the longest derived name (table + "_expires_at_idx")
// within PostgreSQL's 63-byte identifier limit, which would otherwise
// truncate it silently and make two tables share an index name.
const maxTableLen = 63 - len("_expires_at_idx")

// settings are the moat-specific parts of the URL, stripped before pgx sees
// it (pgx would send unknown parameters to the server as run-time settings,
// which fails the connection).
type settings struct {
	table   string // validated plain identifier
	schema  string // validated plain identifier, or "" for the search_path
	timeout time.Duration
}

// knownParams are the URL parameters passed on to pgx besides moat's own
// (table, schema, timeout): libpq's connection parameters that pgx
// understands, pgxpool's pool_* settings, pgx's cache settings, and the two
// run-time settings a session store may want.
var knownParams = []string{
	"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcertmode", "sslsni", "sslnegotiation",
	"connect_timeout", "host", "port", "dbname", "database", "user", "password", "passfile",
	"target_session_attrs", "service", "servicefile", "channel_binding", "require_auth",
	"min_protocol_version", "max_protocol_version", "krbspn", "krbsrvname",
	"pool_max_conns", "pool_min_conns", "pool_min_idle_conns", "pool_max_conn_lifetime",
	"pool_max_conn_idle_time", "pool_health_check_period", "pool_max_conn_lifetime_jitter", "pool_ping_timeout",
	"statement_cache_capacity", "description_cache_capacity", "default_query_exec_mode",
	"application_name", "search_path",
}

// qualified returns the quoted, schema-qualified name of obj (the table or
// one of the objects named after it).
func (s settings) qualified(obj string) string {
	if s.schema == "" {
		return pgx.Identifier{obj}.Sanitize()
	}
	return pgx.Identifier{s.schema, obj}.Sanitize()
}

// parseConfig splits rawURL into moat's settings and the pgxpool
// configuration. Its errors never contain the password: the password is
// taken out of the URL before pgx parses it and put back into the parsed
// configuration afterwards.
func parseConfig(rawURL string) (settings, *pgxpool.Config, error) {
	st := settings{table: DefaultTable, timeout: DefaultTimeout}
	if rawURL == "" {
		return st, nil, errors.New("postgres: empty URL, want postgres://[user[:password]@]host[:port]/database[?param=value...]")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only
		// the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return st, nil, fmt.Errorf("postgres: invalid URL: %v", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return st, nil, fmt.Errorf("postgres: URL scheme is %q, want postgres:// or postgresql:// (key=value connection strings are not accepted)", u.Scheme)
	}
	if u.Opaque != "" {
		return st, nil, errors.New("postgres: invalid URL: want postgres://[user[:password]@]host[:port]/database[?param=value...]")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return st, nil, fmt.Errorf("postgres: invalid URL query: %v", err)
	}
	for _, name := range []string{"table", "schema", "timeout"} {
		vs, ok := q[name]
		if !ok {
			continue
		}
		q.Del(name)
		if len(vs) != 1 {
			return st, nil, fmt.Errorf("postgres: URL parameter %s= is given %d times, want once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "table":
			if err := checkIdentifier(v, maxTableLen); err != nil {
				return st, nil, fmt.Errorf("postgres: URL parameter table=%q: %v", v, err)
			}
			st.table = v
		case "schema":
			if err := checkIdentifier(v, 63); err != nil {
				return st, nil, fmt.Errorf("postgres: URL parameter schema=%q: %v", v, err)
			}
			if strings.HasPrefix(v, "pg_") {
				return st, nil, fmt.Errorf("postgres: URL parameter schema=%q: names starting with pg_ are reserved by PostgreSQL", v)
			}
			st.schema = v
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return st, nil, fmt.Errorf("postgres: URL parameter timeout=%q: want a positive duration such as 1s or 500ms", v)
			}
			st.timeout = d
		}
	}
	for name := range q {
		if !slices.Contains(knownParams, name) {
			// pgx would send it to the server as a run-time setting, and a
			// typo (sslmod=) would fail every connection, or none.
			return st, nil, fmt.Errorf("postgres: unknown URL parameter %q (known: table, schema, timeout, %s)", name, strings.Join(knownParams, ", "))
		}
	}
	_, connectTimeoutSet := q["connect_timeout"]
	u.RawQuery = q.Encode()

	password, hasPassword := "", false
	if u.User != nil {
		password, hasPassword = u.User.Password()
		if name := u.User.Username(); name != "" {
			u.User = url.User(name)
		} else {
			u.User = nil
		}
	}
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		msg := err.Error()
		if hasPassword && password != "" {
			msg = strings.ReplaceAll(msg, password, "xxxxx") // belt and braces
		}
		return st, nil, fmt.Errorf("postgres: invalid connection URL: %s", msg)
	}
	if hasPassword {
		cfg.ConnConfig.Password = password
	}
	// A connection attempt to a host that drops packets must not outlive
	// the call that wanted it by much; pgxpool would allow two minutes.
	if !connectTimeoutSet || cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = st.timeout
	}
	return st, cfg, nil
}

// checkIdentifier accepts plain, lower-case SQL identifiers only: they need
// no quoting, so the name a DBA types in psql is the name moat uses.
func checkIdentifier(s string, maxLen int) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > maxLen:
		return fmt.Errorf("longer than %d characters", maxLen)
	case s[0] >= '0' && s[0] <= '9':
		return errors.New("starts with a digit")
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return errors.New("want a plain identifier of lower-case letters, digits and underscores")
		}
	}
	return nil
}

// CheckURL reports what is wrong with a store URL without connecting, for
// configuration validation (moat check).
func CheckURL(rawURL string) error {
	_, _, err := parseConfig(rawURL)
	return err
}

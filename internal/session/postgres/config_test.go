package postgres

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name       string
		url        string
		table      string
		schema     string
		timeout    time.Duration
		connect    time.Duration
		maxConns   int32
		host       string
		database   string
		user       string
		password   string
		runtimeSet map[string]string // run-time parameters pgx will send
	}{
		{
			name: "defaults", url: "postgres://moat@db.example:5432/sessions?sslmode=disable",
			table: DefaultTable, timeout: time.Second, connect: time.Second,
			host: "db.example", database: "sessions", user: "moat",
		},
		{
			name: "postgresql scheme", url: "postgresql://moat@db.example/sessions?sslmode=disable",
			table: DefaultTable, timeout: time.Second, connect: time.Second,
			host: "db.example", database: "sessions", user: "moat",
		},
		{
			name:  "all moat parameters",
			url:   "postgres://moat:s3cret@db.example/sessions?sslmode=disable&table=bff_sessions&schema=moat&timeout=250ms&pool_max_conns=17",
			table: "bff_sessions", schema: "moat", timeout: 250 * time.Millisecond, connect: 250 * time.Millisecond, maxConns: 17,
			host: "db.example", database: "sessions", user: "moat", password: "s3cret",
		},
		{
			name: "explicit connect_timeout wins", url: "postgres://moat@db.example/sessions?sslmode=disable&connect_timeout=5&timeout=2s",
			table: DefaultTable, timeout: 2 * time.Second, connect: 5 * time.Second,
			host: "db.example", database: "sessions", user: "moat",
		},
		{
			name: "password with URL escapes", url: "postgres://moat:p%40ss%2Fw%3Ard@db.example/sessions?sslmode=disable",
			table: DefaultTable, timeout: time.Second, connect: time.Second,
			host: "db.example", database: "sessions", user: "moat", password: "p@ss/w:rd",
		},
		{
			name: "search_path passes through", url: "postgres://moat@db.example/sessions?sslmode=disable&search_path=moat_test",
			table: DefaultTable, timeout: time.Second, connect: time.Second,
			host: "db.example", database: "sessions", user: "moat",
			runtimeSet: map[string]string{"search_path": "moat_test"},
		},
		{
			name: "pgx and libpq parameters", url: "postgres://moat@db.example/sessions?sslmode=disable&application_name=moat&target_session_attrs=read-write&pool_min_conns=1&default_query_exec_mode=exec",
			table: DefaultTable, timeout: time.Second, connect: time.Second,
			host: "db.example", database: "sessions", user: "moat",
			runtimeSet: map[string]string{"application_name": "moat"},
		},
		{
			name: "longest table name", url: "postgres://moat@db.example/sessions?table=" + strings.Repeat("t", maxTableLen),
			table: strings.Repeat("t", maxTableLen), timeout: time.Second, connect: time.Second,
			host: "db.example", database: "sessions", user: "moat",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, cfg, err := parseConfig(tc.url)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if st.table != tc.table || st.schema != tc.schema || st.timeout != tc.timeout {
				t.Errorf("settings = %q, %q, %v; want %q, %q, %v", st.table, st.schema, st.timeout, tc.table, tc.schema, tc.timeout)
			}
			cc := cfg.ConnConfig
			if cc.Host != tc.host || cc.Database != tc.database || cc.User != tc.user || cc.Password != tc.password {
				t.Errorf("host, database, user, password = %q, %q, %q, %q; want %q, %q, %q, %q",
					cc.Host, cc.Database, cc.User, cc.Password, tc.host, tc.database, tc.user, tc.password)
			}
			if cc.ConnectTimeout != tc.connect {
				t.Errorf("ConnectTimeout = %v, want %v", cc.ConnectTimeout, tc.connect)
			}
			if tc.maxConns != 0 && cfg.MaxConns != tc.maxConns {
				t.Errorf("MaxConns = %d, want %d", cfg.MaxConns, tc.maxConns)
			}
			for _, p := range []string{"table", "schema", "timeout"} {
				if v, ok := cc.RuntimeParams[p]; ok {
					t.Errorf("moat parameter %s=%q reached pgx as a run-time parameter", p, v)
				}
			}
			for k, want := range tc.runtimeSet {
				if got := cc.RuntimeParams[k]; got != want {
					t.Errorf("run-time parameter %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	const secret = "hunter2-secret"
	tests := []struct {
		name string
		url  string
		want string // in the error
	}{
		{"empty", "", "empty URL"},
		{"key=value string", "host=db user=moat password=" + secret, "postgres:// or postgresql://"},
		{"wrong scheme", "mysql://moat:" + secret + "@db/sessions", `scheme is "mysql"`},
		{"unparsable", "postgres://moat:" + secret + "@db:port/sessions", "invalid URL"},
		{"bad escape", "postgres://moat:" + secret + "@db/sessions%zz", "invalid URL"},
		{"bad query", "postgres://moat:" + secret + "@db/sessions?table=%zz", "invalid URL query"},
		{"empty table", "postgres://db/sessions?table=", "table=\"\": empty name"},
		{"upper-case table", "postgres://db/sessions?table=Sessions", "lower-case"},
		{"quote in table", "postgres://db/sessions?table=a%22b", "plain identifier"},
		{"injection in table", "postgres://db/sessions?table=x%3BDROP%20TABLE%20y", "plain identifier"},
		{"dotted table", "postgres://db/sessions?table=public.sessions", "plain identifier"},
		{"table starting with a digit", "postgres://db/sessions?table=1sessions", "starts with a digit"},
		{"table too long", "postgres://db/sessions?table=" + strings.Repeat("t", maxTableLen+1), "longer than"},
		{"table twice", "postgres://db/sessions?table=a&table=b", "given 2 times"},
		{"bad schema", "postgres://db/sessions?schema=My-Schema", "schema="},
		{"reserved schema", "postgres://db/sessions?schema=pg_catalog", "reserved"},
		{"timeout without unit", "postgres://db/sessions?timeout=5", "positive duration"},
		{"zero timeout", "postgres://db/sessions?timeout=0s", "positive duration"},
		{"negative timeout", "postgres://db/sessions?timeout=-1s", "positive duration"},
		{"bad pool size", "postgres://moat:" + secret + "@db/sessions?pool_max_conns=many", "pool_max_conns"},
		{"bad sslmode", "postgres://moat:" + secret + "@db/sessions?sslmode=sometimes", "sslmode"},
		{"unknown parameter", "postgres://moat:" + secret + "@db/sessions?sslmod=disable", `unknown URL parameter "sslmod" (known: table, schema, timeout, sslmode,`},
		{"misspelt moat parameter", "postgres://db/sessions?schem=moat", `unknown URL parameter "schem" (known: table, schema, timeout`},
		{"server setting", "postgres://db/sessions?work_mem=64MB", `unknown URL parameter "work_mem"`},
		{"bad port", "postgres://moat:" + secret + "@db:99999/sessions", "invalid connection URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseConfig(tc.url)
			if err == nil {
				t.Fatalf("parseConfig(%q) succeeded", tc.url)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q contains the password", msg)
			}
			if !strings.HasPrefix(msg, "postgres: ") {
				t.Errorf("error %q does not say which store it is about", msg)
			}
		})
	}
}

func TestLockKeyDependsOnTable(t *testing.T) {
	a := lockKey(settings{table: "moat_sessions"})
	if a != lockKey(settings{table: "moat_sessions"}) {
		t.Fatal("lockKey is not deterministic")
	}
	for _, st := range []settings{{table: "other"}, {schema: "moat", table: "moat_sessions"}} {
		if lockKey(st) == a {
			t.Errorf("lockKey(%+v) equals lockKey of moat_sessions", st)
		}
	}
}

func TestMicrosRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{time.Microsecond, 1},
		{time.Microsecond + 1, 2},
		{time.Minute, 60e6},
		{1<<63 - 1, (1<<63-1)/1000 + 1},
	} {
		if got := micros(tc.ttl); got != tc.want {
			t.Errorf("micros(%v) = %d, want %d", tc.ttl, got, tc.want)
		}
	}
}

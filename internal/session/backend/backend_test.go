package backend

import (
	"strings"
	"testing"
)

// A store URL that is wrong is refused with an error that names what is
// wrong and never repeats the password in it: configuration errors are
// printed by moat check and logged at startup.
func TestCheckURLNeverShowsThePassword(t *testing.T) {
	for _, spec := range []string{
		"redis://u:s3cret@127.0.0.1:6379/0?bogus=1",
		"redis://u:s3cret@127.0.0.1:notaport/0",
		"redis://u:s3cret@%zz/0",
		"redis+cluster://u:s3cret@h1:x,h2/",
		"rediss+sentinel://u:s3cret@h1,h2/m?bogus=1",
		"postgres://u:s3cret@127.0.0.1/db?table=Bad-Name",
		"postgres://u:s3cret@127.0.0.1:notaport/db",
		"postgres://u:s3cret@[::1/db",
		"postgres://u:s3cret@h/db?sslmode=bogus",
		"bolt://u:s3cret@host/x.db",
		"bolt://u:s3cret@[::1/x.db",
		"cassandra://u:s3cret@x",
	} {
		err := CheckURL(spec)
		if err == nil {
			t.Errorf("%s: accepted", spec)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", spec, err)
		}
	}
	for _, spec := range []string{"memory", "bolt:///var/lib/moat/s.db", "redis://u:p@127.0.0.1:6379/0", "postgres://u:p@127.0.0.1/db"} {
		if err := CheckURL(spec); err != nil {
			t.Errorf("%s: %v", spec, err)
		}
	}
}

// Redact is what moat prints of a store URL: no form of a password may
// survive it, least of all in a URL too garbled to parse (a typo is the
// usual reason it gets printed at all).
func TestRedactHidesEveryPassword(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"redis://u:s3cret@h:6379/0", "redis://u:xxxxx@h:6379/0"},
		{"redis ://u:s3cret@h/0", "redis ://REDACTED@h/0"},
		{"postgres://u:s3%zzcret@h/db", "postgres://REDACTED@h/db"},
		{"postgres://u:s3cret@[::1/db", "postgres://REDACTED@[::1/db"},
		{"u:s3cret@h%zz", "REDACTED@h%zz"},
		{"postgres://u@h/db?password=s3cret&sslmode=disable", "postgres://u@h/db?password=REDACTED&sslmode=disable"},
		{"postgres://h/db?sslmode=disable&password=s3cret", "postgres://h/db?password=REDACTED&sslmode=disable"},
		{"bolt:///var/lib/moat/s.db", "bolt:///var/lib/moat/s.db"},
		{"memory", "memory"},
	} {
		got := Redact(tc.spec)
		if strings.Contains(got, "s3cret") || strings.Contains(got, "s3%zzcret") {
			t.Errorf("Redact(%q) = %q: shows the password", tc.spec, got)
		}
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.spec, got, tc.want)
		}
	}
}

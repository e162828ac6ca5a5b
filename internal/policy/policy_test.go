package policy

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func claims(t *testing.T, js string) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheck(t *testing.T) {
	fresh := now.Add(-2 * time.Minute).Unix()
	stale := now.Add(-2 * time.Hour).Unix()
	user := `{"sub":"alice","groups":["staff","admin"],"roles":"editor","level":3,"verified":true,
		"realm_access":{"roles":["ops"]},"https://example.com/roles":["auditor"],
		"acr":"silver","amr":["pwd","otp"],"auth_time":` + itoa(fresh) + `}`
	for _, tc := range []struct {
		name   string
		rules  []Rule
		claims string
		scope  string // granted to the access token; "" unknown
		want   string // "allow", "forbidden" or the step-up query
	}{
		{"no rules", nil, user, "", "allow"},
		{"group any_of", []Rule{{Claim: "groups", AnyOf: []string{"admin", "root"}}}, user, "", "allow"},
		{"group missing", []Rule{{Claim: "groups", AnyOf: []string{"root"}}}, user, "", "forbidden"},
		{"all_of met", []Rule{{Claim: "groups", AllOf: []string{"staff", "admin"}}}, user, "", "allow"},
		{"all_of unmet", []Rule{{Claim: "groups", AllOf: []string{"staff", "root"}}}, user, "", "forbidden"},
		{"string claim", []Rule{{Claim: "roles", AnyOf: []string{"editor"}}}, user, "", "allow"},
		{"string claim is not split", []Rule{{Claim: "roles", AnyOf: []string{"edit"}}}, user, "", "forbidden"},
		{"number claim", []Rule{{Claim: "level", AnyOf: []string{"3"}}}, user, "", "allow"},
		{"bool claim", []Rule{{Claim: "verified", AnyOf: []string{"true"}}}, user, "", "allow"},
		{"nested claim", []Rule{{Claim: "realm_access.roles", AnyOf: []string{"ops"}}}, user, "", "allow"},
		{"dotted name", []Rule{{Claim: "https://example.com/roles", AnyOf: []string{"auditor"}}}, user, "", "allow"},
		{"absent claim fails closed", []Rule{{Claim: "department", AnyOf: []string{"x"}}}, user, "", "forbidden"},
		{"object claim fails closed", []Rule{{Claim: "realm_access", AnyOf: []string{"ops"}}}, user, "", "forbidden"},
		{"null claim fails closed", []Rule{{Claim: "groups", AnyOf: []string{"admin"}}}, `{"groups":null}`, "", "forbidden"},
		{"nested array fails closed", []Rule{{Claim: "groups", AnyOf: []string{"admin"}}}, `{"groups":[["admin"]]}`, "", "forbidden"},
		{"acr met", []Rule{{ACR: []string{"gold", "silver"}}}, user, "", "allow"},
		{"acr unmet", []Rule{{ACR: []string{"gold"}}}, user, "", "acr_values=gold"},
		{"acr absent", []Rule{{ACR: []string{"gold", "platinum"}}}, `{}`, "", "acr_values=gold+platinum"},
		{"amr met", []Rule{{AMR: []string{"otp", "hwk"}}}, user, "", "allow"},
		{"amr unmet", []Rule{{AMR: []string{"hwk"}}}, user, "", "prompt=login"},
		{"max_age met", []Rule{{MaxAge: 10 * time.Minute}}, user, "", "allow"},
		{"max_age unmet", []Rule{{MaxAge: 10 * time.Minute}}, `{"auth_time":` + itoa(stale) + `}`, "", "max_age=600"},
		{"auth_time absent", []Rule{{MaxAge: time.Hour}}, `{}`, "", "max_age=3600"},
		{"auth_time not a number", []Rule{{MaxAge: time.Hour}}, `{"auth_time":"0"}`, "", "max_age=3600"},
		{"strictest max_age", []Rule{{MaxAge: time.Hour}, {MaxAge: time.Minute}}, `{}`, "", "max_age=60"},
		{"step-ups combine", []Rule{{ACR: []string{"gold"}}, {MaxAge: time.Minute}}, `{}`, "", "acr_values=gold&max_age=60"},
		{"a missing right beats a step-up", []Rule{{ACR: []string{"gold"}}, {Claim: "groups", AnyOf: []string{"root"}}}, user, "", "forbidden"},
		{"scope granted", []Rule{{Scope: []string{"orders:write", "openid"}}}, user, "openid orders:read  orders:write", "allow"},
		{"scope missing", []Rule{{Scope: []string{"orders:read", "orders:admin"}}}, user, "openid orders:read", "forbidden"},
		{"scope is matched whole", []Rule{{Scope: []string{"orders"}}}, user, "openid orders:read", "forbidden"},
		{"scope is case-sensitive", []Rule{{Scope: []string{"Orders:read"}}}, user, "openid orders:read", "forbidden"},
		{"unknown scope fails closed", []Rule{{Scope: []string{"openid"}}}, user, "", "forbidden"},
		{"a scope claim is not the grant", []Rule{{Scope: []string{"orders:read"}}}, `{"scope":"orders:read"}`, "openid", "forbidden"},
		{"a missing scope beats a step-up", []Rule{{MaxAge: time.Minute}, {Scope: []string{"orders:read"}}}, `{}`, "openid", "forbidden"},
		{"every rule must hold", []Rule{{Claim: "groups", AnyOf: []string{"admin"}}, {Claim: "roles", AnyOf: []string{"viewer"}}}, user, "", "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.rules, "/auth/login")
			if err != nil {
				t.Fatal(err)
			}
			out := p.Check(claims(t, tc.claims), tc.scope, now)
			got := "allow"
			switch {
			case out.Forbidden:
				got = "forbidden"
			case out.StepUp != "":
				u, err := url.Parse(out.StepUp)
				if err != nil || u.Path != "/auth/login" {
					t.Fatalf("StepUp = %q, want a URL on /auth/login", out.StepUp)
				}
				got = u.RawQuery
			}
			if got != tc.want {
				t.Errorf("Check = %s (%+v), want %s", got, out, tc.want)
			}
			if out.Allowed() != (tc.want == "allow") {
				t.Errorf("Allowed() = %v for %s", out.Allowed(), got)
			}
			if !out.Allowed() && out.Reason == "" {
				t.Error("a refusal without a reason")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{}, "exactly one of claim"},
		{Rule{Claim: "groups"}, "exactly one of any_of or all_of"},
		{Rule{Claim: "groups", AnyOf: []string{"a"}, AllOf: []string{"b"}}, "exactly one of any_of or all_of"},
		{Rule{Claim: "groups", AnyOf: []string{"a"}, MaxAge: time.Minute}, "exactly one of claim"},
		{Rule{ACR: []string{"gold"}, AnyOf: []string{"a"}}, "belong to a claim rule"},
		{Rule{Claim: "a..b", AnyOf: []string{"a"}}, "dotted path"},
		{Rule{Claim: ".a", AnyOf: []string{"a"}}, "dotted path"},
		{Rule{Claim: "groups", AnyOf: []string{}}, "must not be empty"},
		{Rule{ACR: []string{""}}, "must not be empty"},
		{Rule{MaxAge: -time.Second}, "must be positive"},
		{Rule{Scope: []string{}}, "must not be empty"},
		{Rule{Scope: []string{"a b"}}, "is not a scope"},
		{Rule{Scope: []string{`a"b`}}, "is not a scope"},
		{Rule{Scope: []string{`a\b`}}, "is not a scope"},
		{Rule{Scope: []string{"é"}}, "is not a scope"},
		{Rule{Scope: []string{"read"}, Claim: "groups", AnyOf: []string{"a"}}, "exactly one of claim"},
		{Rule{Scope: []string{"orders:read", "https://api.example.com/x.y"}}, ""},
		{Rule{Claim: "groups", AnyOf: []string{"a"}}, ""},
		{Rule{MaxAge: time.Minute}, ""},
	} {
		err := tc.rule.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.rule, err, tc.want)
		}
	}
}

func TestNilPolicyAllows(t *testing.T) {
	p, err := New(nil, "/auth/login")
	if err != nil || p != nil {
		t.Fatalf("New(nil) = %v, %v", p, err)
	}
	if !p.Check(nil, "", now).Allowed() {
		t.Error("a nil policy refused")
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func BenchmarkCheck(b *testing.B) {
	p, _ := New([]Rule{{Claim: "groups", AnyOf: []string{"admin"}}, {MaxAge: time.Hour}}, "/auth/login")
	raw := []byte(`{"sub":"alice","name":"Alice","email":"alice@example.com","groups":["staff","admin"],"auth_time":` + itoa(now.Unix()) + `}`)
	b.ReportAllocs()
	for b.Loop() {
		m := map[string]any{}
		json.Unmarshal(raw, &m)
		if !p.Check(m, "", now).Allowed() {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckDecoded(b *testing.B) {
	p, _ := New([]Rule{{Claim: "groups", AnyOf: []string{"admin"}}, {MaxAge: time.Hour}}, "/auth/login")
	m := map[string]any{}
	json.Unmarshal([]byte(`{"sub":"alice","name":"Alice","email":"alice@example.com","groups":["staff","admin"],"auth_time":`+itoa(now.Unix())+`}`), &m)
	b.ReportAllocs()
	for b.Loop() {
		if !p.Check(m, "", now).Allowed() {
			b.Fatal("refused")
		}
	}
}

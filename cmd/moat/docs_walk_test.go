package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moat-bff/moat/internal/logtest"
	"github.com/moat-bff/moat/internal/oidc/oidctest"
	"github.com/moat-bff/moat/internal/session"
	"go.yaml.in/yaml/v3"
)

// The docs walk: the commands README.md and docs/operations.md show are run
// as an operator would run them, with the binary built once as the README
// builds it, against local Redis, PostgreSQL and bbolt, and the output the
// docs quote is compared with what moat prints. Every shell line of every
// Markdown file of the repository (docsWithCommands) is either walked by a
// test or excused with the test or .ci/run step that runs it, so a new
// command in the docs without a walk fails this test.

var walkDocs = []string{"../../README.md", "../../docs/operations.md"}

// walked are the shell lines the tests of this package run (in the same
// form or with local addresses and ports); excused are the ones they do
// not, and who runs them instead.
var (
	walked = []string{
		`^go build .*-o moat \./cmd/moat`,
		`^\.?/?moat keygen`,
		`^export MOAT_OIDC_CLIENT_SECRET=\.\.\. MOAT_SESSION_KEYS=\.\.\.`,
		`^\./moat check --config moat\.yaml`,
		`^\./moat serve --config moat\.yaml`,
		`^ADMIN=`, `^AUTH=`, `^SUB=`,
		`^curl .*\$ADMIN/admin/sessions`,
		demoLine, // TestDocsDemoCommands
	}
	excused = map[string]string{
		`^go test -race \./\.\.\.`: "the test suite itself (.ci/run step 'tests')",
		`^go test -race -run `:     "tests of the suite, run by .ci/run step 'tests' (TestDocsNamedTestsExist checks the names)",
		`^(MOAT_BENCH_SESSIONS=\d+ |MOAT_TEST_REDIS_URL=\S+ )*go test -run '\^\$' -bench `: "benchmark commands; .ci/run step 'benchmarks build and run once' runs every benchmark once " +
			"(go test -run '^$' -bench . -benchtime 1x ./...; TestDocsNamedTestsExist checks the names)",
		`^MOAT_TEST_REDIS_URL=redis://127\.0\.0\.1:6379/0 go test -run TestCacheInvalidation -v \.`: ".ci/run step 'clientbench module' runs it",
		`^cd internal/session/redis/clientbench`:                                                    ".ci/run step 'clientbench module' runs its test and benchmarks there",
		`^go run golang\.org/x/perf/cmd/benchstat@latest`:                                           "compares benchmark runs by hand; .ci/run step 'clientbench module' runs the benchmarks",
		`^MOAT_TEST_(REDIS|POSTGRES)_URL=\S+ \\$`:                                                   "environment of the go test command on the next line",
		`^scripts/fuzz`:  ".ci/run step 'fuzzers (bounded)' runs it",
		`^scripts/hydra`: ".ci/run step 'tools' runs it (in the background, when $HOME/go/bin/hydra is not the pinned version)",
		`^git clone `:    "needs the network",
		`^npm --prefix examples/react-vite run setup`: ".ci/run step 'browser packages' runs it",
		`^npm --prefix examples/react-vite start`:     ".ci/run step 'examples/react-vite walked' runs npm test, whose walk.mjs starts start.mjs as npm start does",
		`^npm ci --prefix clients/js`:                 ".ci/run step 'browser packages' runs it (npm --prefix examples/react-vite run setup runs npm ci --prefix ../../clients/js)",
		`^npm test --prefix clients/js`:               ".ci/run step 'browser packages' runs it",
		`^npm ci --prefix internal/realop/provider`:   ".ci/run step 'real OpenID Provider' runs it",
		`^npm run dev`:                        "your SPA's own dev server; TestBrowserFrontendOrigin (internal/demo) runs a stand-in that proxies /auth, /api and /resource to the demo",
		`^export MOAT_TEST_`:                  "test settings, used by this very run",
		`^install `:                           "installs into /etc and /usr/local as root; the files are checked by deploy/deploy_test.go",
		`^systemctl `:                         "needs systemd as PID 1; the unit is checked by deploy/deploy_test.go",
		`^kubectl `:                           "needs a cluster; the manifests are checked by deploy/deploy_test.go, the chart by TestHelmChart",
		`^helm install moat deploy/helm/moat`: "needs a cluster; TestHelmChart (deploy) lints and renders the chart with helm",
		`^OTEL_`:                              "environment for a collector; TestEveryStderrLineIsJSON runs moat with OTEL_* set",
		`^\.?/?moat init `:                    "moat init has its own tests (internal/onboard, cmd/moat/init_test.go); TestDocsFlagsExist checks the flags",
		`^(go run \./cmd/moat|moat) demo --idp-only `: "TestDemoIdPOnlyWithServe runs it (port 0, its serve's redirect URI); TestDocsFlagsExist checks the flags",
		`^\s+-`:            "continuation of the line before",
		`^\s+\./internal/`: "continuation of the line before",
		`^moat (check|serve) --config /etc/moat/`:              "the same commands with the systemd paths",
		`^set -a; \. /etc/moat/moat\.env; set \+a; moat`:       "the same check with the systemd paths",
		`^(GOMAXPROCS=1 )?go run \./bench/cmd/moatbench`:       "moatbench needs wrk and runs for minutes (a measurement, not a test); TestDocsFlagsExist checks its flags",
		`^go build -o /tmp/moat-(same|main) \./cmd/moat`:       "builds moatbench's baseline binary (go build ./cmd/moat is walked by TestDocsWalk)",
		`^mkdir /tmp/moat-prev-src && git archive`:             "checks out an older commit for a moatbench baseline by hand",
		`^\(cd /tmp/moat-prev-src && go build`:                 "builds moatbench's baseline binary (go build ./cmd/moat is walked by TestDocsWalk)",
		`^git worktree add /tmp/base `:                         "checks out and builds an older commit for a moatbench baseline by hand",
		`^GOBIN=/tmp/o2p go install github\.com/oauth2-proxy/`: "installs oauth2-proxy for a moatbench comparison run; not part of moat",
		`^apt-get install -y wrk nginx-light`:                  "tools of moatbench's nginx run; .ci/run step 'tools' installs nginx-light for TestRealGateways",
	}
)

// docsWithCommands are the Markdown files of the repository, outside
// node_modules.
func docsWithCommands(t *testing.T) []string {
	t.Helper()
	var docs []string
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"../../README.md", "../../docs/operations.md", "../../docs/demo.md", "../../docs/performance.md", "../../clients/js/README.md"} {
		if !slices.Contains(docs, want) {
			t.Fatalf("the docs walk does not find %s (found %q)", want, docs)
		}
	}
	return docs
}

// shellLines returns the command lines of doc's sh, bash and console
// blocks (comments and blank lines dropped).
func shellLines(doc string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"), strings.HasPrefix(line, "```bash"), strings.HasPrefix(line, "```console"):
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			out = append(out, line)
		}
	}
	return out
}

func readDoc(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// blockAfter returns the body of the first ``` block of kind (yaml, or ""
// for a plain one) that opens after marker in doc.
func blockAfter(t *testing.T, doc, marker, kind string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("the docs no longer contain %q", marker)
	}
	rest := doc[i:]
	if strings.Count("\n"+doc[:i], "\n```")%2 == 1 { // marker inside a block: start after it
		rest = rest[strings.Index(rest, "\n```")+1:]
		rest = rest[strings.Index(rest, "\n")+1:]
	}
	var body []string
	in, want := false, false
	for _, line := range strings.Split(rest, "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, want = true, strings.TrimPrefix(line, "```") == kind
		case strings.HasPrefix(line, "```"):
			if want {
				return strings.Join(body, "\n") + "\n"
			}
			in = false
		case in && want:
			body = append(body, line)
		}
	}
	t.Fatalf("no ```%s block after %q", kind, marker)
	return ""
}

func TestDocsCommandsAreAllWalked(t *testing.T) {
	for _, path := range docsWithCommands(t) {
		for _, line := range shellLines(readDoc(t, path)) {
			ok := false
			for _, re := range walked {
				ok = ok || regexp.MustCompile(re).MatchString(line)
			}
			for re := range excused {
				ok = ok || regexp.MustCompile(re).MatchString(line)
			}
			if !ok {
				t.Errorf("%s shows a command the docs walk neither runs nor excuses: %s", path, line)
			}
		}
	}
}

type walker struct {
	bin string
	dir string
	env []string
}

// moat runs the built binary in the walk's directory, as ./moat.
func (w *walker) moat(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(w.bin, args...)
	cmd.Dir, cmd.Env = w.dir, w.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// serve starts ./moat serve --config file and waits for /healthz.
func (w *walker) serve(t *testing.T, file, addr string) *logtest.Buffer {
	t.Helper()
	cmd := exec.Command(w.bin, "serve", "--config", file)
	cmd.Dir, cmd.Env = w.dir, w.env
	logs := &logtest.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat serve did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// config writes the README's configuration with the walk's local parts
// (IdP, addresses, store, SPA directory) to name and returns its path.
func (w *walker) config(t *testing.T, name, readmeYAML string, set func(map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(readmeYAML), &m); err != nil {
		t.Fatalf("README's configuration is not YAML: %v", err)
	}
	set(m)
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDocsWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	redisURL, pgURL := os.Getenv("MOAT_TEST_REDIS_URL"), os.Getenv("MOAT_TEST_POSTGRES_URL")
	if redisURL == "" || pgURL == "" {
		t.Skip("set MOAT_TEST_REDIS_URL and MOAT_TEST_POSTGRES_URL (the walk runs against both)")
	}
	readme, ops := readDoc(t, walkDocs[0]), readDoc(t, walkDocs[1])
	w := &walker{dir: t.TempDir()}
	w.bin = filepath.Join(w.dir, "moat")

	// go build -o moat ./cmd/moat, once.
	build := exec.Command("go", "build", "-o", w.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// ./moat keygen: a session sealing key; export the two variables.
	out, _, err := w.moat("keygen")
	key := strings.TrimSpace(out)
	if _, perr := session.ParseKey(key); err != nil || perr != nil {
		t.Fatalf("moat keygen: %q %v %v", out, err, perr)
	}
	op := oidctest.New(t, "https://app.example.com/auth/callback")
	adminToken, _, _ := w.moat("keygen")
	adminToken = strings.TrimSpace(adminToken)
	w.env = append(os.Environ(), "MOAT_OIDC_CLIENT_SECRET="+op.ClientSecret, "MOAT_SESSION_KEYS="+key,
		"MOAT_ADMIN_TOKEN="+adminToken)

	// The README's check output, for the README's broken moat.yaml.
	t.Run("check output quoted in README", func(t *testing.T) {
		marker := "`moat check` prints every problem with its key and the fix"
		broken := blockAfter(t, readme, marker, "yaml")
		want := blockAfter(t, readme, marker, "")
		if err := os.WriteFile(filepath.Join(w.dir, "moat.yaml"), []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := w.moat("check", "--config", "moat.yaml")
		if err == nil || stderr != want {
			t.Errorf("moat check (%v) printed:\n%s\nREADME.md quotes:\n%s", err, stderr, want)
		}
	})

	readmeYAML := blockAfter(t, readme, "./moat serve --config moat.yaml", "yaml")
	spaDir := filepath.Join(w.dir, "dist")
	os.MkdirAll(spaDir, 0o700)
	os.WriteFile(filepath.Join(spaDir, "index.html"), []byte("<!doctype html><title>app</title>"), 0o600)
	local := func(store, listen, admin string) func(map[string]any) {
		return func(m map[string]any) {
			m["listen"] = listen
			o := m["oidc"].(map[string]any)
			o["issuer"], o["client_id"] = op.Issuer, op.ClientID
			m["session"].(map[string]any)["store"] = store
			m["spa"].(map[string]any)["dir"] = spaDir
			m["admin"].(map[string]any)["listen"] = admin
		}
	}
	tag := strings.ToLower(rand.Text()[:10])
	u, _ := url.Parse(pgURL)
	q := u.Query()
	q.Set("schema", "moat_walk_"+tag)
	u.RawQuery = q.Encode()
	stores := map[string]string{
		"bolt":     "bolt://" + filepath.Join(w.dir, "sessions.db"),
		"redis":    redisURL + "?prefix=moatwalk" + tag + ":",
		"postgres": u.String(),
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, pgURL); err == nil {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS moat_walk_"+tag+" CASCADE")
			conn.Close(ctx)
		}
	})

	// ./moat check --config moat.yaml against each store: it changes
	// nothing (a store not created yet is a note), moat migrate creates it.
	for _, kind := range []string{"bolt", "redis", "postgres"} {
		t.Run("check "+kind, func(t *testing.T) {
			cfg := w.config(t, "moat.yaml", readmeYAML, local(stores[kind], freeAddr(t), freeAddr(t)))
			out, stderr, err := w.moat("check", "--config", "moat.yaml")
			if err != nil || !strings.HasSuffix(out, "moat.yaml: OK\n") {
				t.Fatalf("check: %v\n%s%s", err, out, stderr)
			}
			if kind != "redis" {
				if !strings.Contains(out, "note: session.store:") {
					t.Errorf("check on a store not created yet says nothing:\n%s", out)
				}
				if out, stderr, err := w.moat("migrate", "--config", cfg); err != nil || !strings.Contains(out, "session store ready") {
					t.Fatalf("migrate: %v\n%s%s", err, out, stderr)
				}
				if out, _, err := w.moat("check", "--config", "moat.yaml"); err != nil || strings.Contains(out, "note:") {
					t.Errorf("check after migrate: %v\n%s", err, out)
				}
			}
		})
	}

	// ./moat serve on bolt, and moat check next to it (operations.md).
	t.Run("serve on bolt, check next to it", func(t *testing.T) {
		addr := freeAddr(t)
		cfg := w.config(t, "bolt.yaml", readmeYAML, local(stores["bolt"], addr, freeAddr(t)))
		w.serve(t, cfg, addr)
		note := regexp.MustCompile("`(note: session.store: …[^`]*)`").FindStringSubmatch(ops)
		if note == nil {
			t.Fatal("docs/operations.md no longer quotes check's note about a store in use")
		}
		out, stderr, err := w.moat("check", "--config", "bolt.yaml")
		before, after, _ := strings.Cut(strings.ReplaceAll(note[1], "\n", " "), "…")
		if err != nil || !strings.Contains(out, before) || !strings.Contains(out, after) || !strings.HasSuffix(out, ": OK\n") {
			t.Errorf("check next to serve: %v\n%s%s\ndocs quote: %s", err, out, stderr, note[1])
		}
		// /readyz as the Health table quotes it.
		ready := regexp.MustCompile("\\| `GET /readyz` \\|[^|]*\\| `200 (\\{[^`]*\\})`").FindStringSubmatch(ops)
		if ready == nil {
			t.Fatal("docs/operations.md no longer quotes the /readyz answer")
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !sameJSON(t, body, []byte(ready[1])) {
			t.Errorf("/readyz: %s %s, docs quote 200 %s", resp.Status, body, ready[1])
		}
	})

	// The admin API commands of the runbook, with curl, on Redis; a session
	// made as a login makes it, sealed with the exported key.
	t.Run("admin API runbook", func(t *testing.T) {
		addr, admin := freeAddr(t), freeAddr(t)
		cfg := w.config(t, "redis.yaml", readmeYAML, local(stores["redis"], addr, admin))
		loginOnce(t, stores["redis"], key)
		w.serve(t, cfg, addr)
		var lines []string
		for _, l := range shellLines(ops) {
			if strings.HasPrefix(l, "curl ") && strings.Contains(l, "$ADMIN/admin/sessions") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 3 {
			t.Fatalf("docs/operations.md shows %d admin curl commands, the walk knows 3: %q", len(lines), lines)
		}
		sh := func(line, id string) (string, int) {
			line = strings.Replace(line, "<id>", id, 1)
			cmd := exec.Command("sh", "-c", line+` -w '\n%{http_code}'`)
			cmd.Env = append(w.env, "ADMIN=http://"+admin, "AUTH=Authorization: Bearer "+adminToken, "SUB=alice")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			body, code, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			var status int
			fmt.Sscan(code, &status)
			return body, status
		}
		body, code := sh(lines[0], "")
		var list struct {
			Sessions []struct{ ID, Sub string }
		}
		json.Unmarshal([]byte(body), &list)
		if code != 200 || len(list.Sessions) != 1 || list.Sessions[0].Sub != "alice" {
			t.Fatalf("list: %d %s", code, body)
		}
		if body, code := sh(lines[1], list.Sessions[0].ID); code != 200 || body != `{"revoked":1}` {
			t.Errorf("end one: %d %s, docs: {\"revoked\":1}", code, body)
		}
		if _, code := sh(lines[1], list.Sessions[0].ID); code != 404 {
			t.Errorf("end one again: %d, docs: 404 if it no longer exists", code)
		}
		if body, code := sh(lines[2], ""); code != 200 || !regexp.MustCompile(`^\{"revoked":\d+\}$`).MatchString(body) {
			t.Errorf("end all: %d %s, docs: {\"revoked\":N}", code, body)
		}
	})

	// The key refusal operations.md quotes, for another key over the
	// session left above, and the recovery it names.
	t.Run("key refusal and recovery", func(t *testing.T) {
		quoted := blockAfter(t, ops, "rather than log those users out:", "")
		quoted = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(quoted), "…"))
		quoted = strings.ReplaceAll(quoted, "\n", " ")
		loginOnce(t, stores["redis"], key)
		other := *w
		other.env = append(append([]string(nil), w.env...), "MOAT_SESSION_KEYS="+session.NewKey())
		w.config(t, "moat.yaml", readmeYAML, local(stores["redis"], freeAddr(t), freeAddr(t)))
		_, stderr, err := other.moat("check", "--config", "moat.yaml")
		want := strings.Replace(quoted, "redis://redis:6379/0", stores["redis"], 1)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("check with another key (%v):\n%s\ndocs quote:\n%s", err, stderr, want)
		}
		if out, stderr, err := other.moat("reset-key-check", "--config", "moat.yaml"); err != nil {
			t.Fatalf("reset-key-check: %v\n%s%s", err, out, stderr)
		}
		if out, stderr, err := other.moat("check", "--config", "moat.yaml"); err != nil {
			t.Errorf("check after reset-key-check: %v\n%s%s", err, out, stderr)
		}
	})

	// The disabled admin API's answer (operations.md), on a moat without
	// an admin token.
	t.Run("admin API disabled", func(t *testing.T) {
		quoted := regexp.MustCompile("`(\\{\"error\":\"disabled\"[^`]*)`").FindStringSubmatch(ops)
		if quoted == nil {
			t.Fatal("docs/operations.md no longer quotes the disabled admin API's answer")
		}
		addr, admin := freeAddr(t), freeAddr(t)
		cfg := w.config(t, "noadmin.yaml", readmeYAML, local("bolt://"+filepath.Join(w.dir, "noadmin.db"), addr, admin))
		noToken := *w
		noToken.env = nil
		for _, e := range w.env {
			if !strings.HasPrefix(e, "MOAT_ADMIN_TOKEN=") {
				noToken.env = append(noToken.env, e)
			}
		}
		noToken.serve(t, cfg, addr)
		resp, err := http.Get("http://" + admin + "/admin/sessions?sub=alice")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		before, _, _ := strings.Cut(quoted[1], "…")
		if resp.StatusCode != 404 || !strings.HasPrefix(string(body), before) {
			t.Errorf("disabled admin API: %s %s, docs quote 404 %s", resp.Status, body, quoted[1])
		}
	})
}

func sameJSON(t *testing.T, a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}

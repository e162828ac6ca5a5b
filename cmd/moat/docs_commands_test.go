package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-bff/moat/internal/logtest"
)

// demoLine matches the docs' `moat demo` commands TestDocsDemoCommands runs.
const demoLine = `^(go run \./cmd/moat|moat) demo( |$)`

// shellCommands returns the commands of every sh, bash and console block
// of every Markdown file: backslash-continued lines joined, comments cut,
// and each block's commands prefixed with the directory of the block's
// last cd ("" before one).
func shellCommands(t *testing.T) map[string][]docCommand {
	t.Helper()
	cmds := map[string][]docCommand{}
	for _, path := range docsWithCommands(t) {
		var cur, dir string
		in := false
		for _, line := range strings.Split(readDoc(t, path), "\n") {
			if strings.HasPrefix(line, "```") {
				in, dir = len(shellLines(line+"\nx\n```")) == 1, ""
				continue
			}
			if !in || len(shellLines("```sh\n"+line+"\n```")) == 0 {
				continue
			}
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if cont, ok := strings.CutSuffix(line, `\`); ok {
				cur += cont + " "
				continue
			}
			c := strings.Join(strings.Fields(cur+line), " ")
			cur = ""
			if d, ok := strings.CutPrefix(c, "cd "); ok {
				dir = d
			}
			cmds[path] = append(cmds[path], docCommand{c, dir})
		}
	}
	return cmds
}

// docCommand is one command of the docs and the directory it runs in,
// relative to the repository.
type docCommand struct{ line, dir string }

// TestDocsDemoCommands runs every `moat demo` command the docs show (but
// --idp-only: TestDemoIdPOnlyWithServe), on free ports, and checks what
// its banner says against its flags: where to open, the CSRF mode, and
// that moat answers.
func TestDocsDemoCommands(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(demoLine)
	for path, cmds := range shellCommands(t) {
		for _, dc := range cmds {
			c := dc.line
			if !re.MatchString(c) || strings.Contains(c, "--idp-only") || seen[c] {
				continue
			}
			seen[c] = true
			args := strings.Fields(c)
			if args[0] == "go" {
				args = args[2:] // go run ./cmd/moat: this test binary is cmd/moat
			}
			args = args[1:]
			t.Run(path+": "+c, func(t *testing.T) {
				flags := map[string]string{"--frontend-origin": "", "--csrf-mode": "header"}
				for i := 1; i+1 < len(args); i += 2 {
					flags[args[i]] = args[i+1]
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				var stdout, stderr logtest.Buffer
				done := make(chan error, 1)
				go func() {
					done <- run(ctx, append(args, "--bff-port", "0", "--idp-port", "0", "--api-port", "0", "--admin-port", "0"), &stdout, &stderr)
				}()
				open := regexp.MustCompile(`Open +(\S+)(?: \(your SPA; moat is at (\S+)\))?`)
				deadline := time.Now().Add(15 * time.Second)
				var m []string
				for m = open.FindStringSubmatch(stdout.String()); m == nil || !strings.Contains(stdout.String(), "Ctrl-C"); m = open.FindStringSubmatch(stdout.String()) {
					if time.Now().After(deadline) {
						t.Fatalf("no banner after 15s\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
					}
					time.Sleep(20 * time.Millisecond)
				}
				moat := strings.TrimSuffix(m[1], "/")
				if fo := flags["--frontend-origin"]; fo != "" {
					if m[1] != fo+"/" || m[2] == "" {
						t.Errorf("banner says open %s (moat at %q), want the SPA %s/", m[1], m[2], fo)
					}
					moat = m[2]
				}
				if want := "CSRF mode: " + flags["--csrf-mode"] + "."; !strings.Contains(stdout.String(), want) {
					t.Errorf("banner lacks %q:\n%s", want, stdout.String())
				}
				resp, err := http.Get(moat + "/auth/checksession")
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s/auth/checksession: %v %v", moat, resp, err)
				}
				resp.Body.Close()
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("moat demo: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("moat demo did not stop after its context ended")
				}
			})
		}
	}
	if len(seen) < 3 {
		t.Fatalf("only %d moat demo commands found in the docs", len(seen))
	}
}

// TestDocsFlagsExist checks every flag the docs pass to moat init, moat
// demo and moatbench (commands excused from running) against their -h.
func TestDocsFlagsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds moatbench")
	}
	help := map[string]string{}
	for _, sub := range []string{"init", "demo"} {
		var stdout, stderr logtest.Buffer
		if err := run(t.Context(), []string{sub, "-h"}, &stdout, &stderr); err != nil {
			t.Fatalf("moat %s -h: %v", sub, err)
		}
		help["moat "+sub] = stdout.String() + stderr.String()
	}
	bench := filepath.Join(t.TempDir(), "moatbench")
	if out, err := exec.Command("go", "build", "-o", bench, "../../bench/cmd/moatbench").CombinedOutput(); err != nil {
		t.Fatalf("go build moatbench: %v\n%s", err, out)
	}
	out, _ := exec.Command(bench, "-h").CombinedOutput()
	help["moatbench"] = string(out)

	which := regexp.MustCompile(`^(?:\S+=\S+ )*(?:go run \./cmd/moat|\.?/?moat) (init|demo) |^(?:\S+=\S+ )*go run \./bench/cmd/moatbench( |$)`)
	flag := regexp.MustCompile(`(?:^| )--?([a-z][a-z0-9-]*)`)
	n := 0
	for path, cmds := range shellCommands(t) {
		for _, dc := range cmds {
			c := dc.line
			m := which.FindStringSubmatch(c)
			if m == nil {
				continue
			}
			tool := "moatbench"
			if m[1] != "" {
				tool = "moat " + m[1]
			}
			for _, f := range flag.FindAllStringSubmatch(c, -1) {
				n++
				if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f[1]) + `\b`).MatchString(help[tool]) {
					t.Errorf("%s: %s has no flag -%s: %s", path, tool, f[1], c)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d flags found in the docs' moat init, moat demo and moatbench commands", n)
	}
}

// TestDocsNamedTestsExist checks that the tests and benchmarks the docs'
// go test commands name (-run, -bench) exist in the packages they name:
// .ci/run runs them all, so a renamed one would leave the docs' command
// selecting nothing.
func TestDocsNamedTestsExist(t *testing.T) {
	goTest := regexp.MustCompile(`(?:^| )go test (.*)`)
	pattern := regexp.MustCompile(`-(run|bench) ('[^']*'|\S+)`)
	pkg := regexp.MustCompile(`(?:^| )(\.(?:/\S*)?)(?: |$)`)
	funcs := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark)\w+)\(`)
	n := 0
	for path, cmds := range shellCommands(t) {
		for _, dc := range cmds {
			c := dc.line
			m := goTest.FindStringSubmatch(c)
			if m == nil {
				continue
			}
			dir := filepath.Join("../..", dc.dir) // a cd may move into another module
			var names []string
			for _, p := range pkg.FindAllStringSubmatch(pattern.ReplaceAllString(m[1], ""), -1) {
				pdir := filepath.Join(dir, strings.TrimSuffix(p[1], "..."))
				if strings.HasSuffix(p[1], "...") {
					continue // the whole suite
				}
				files, _ := filepath.Glob(filepath.Join(pdir, "*_test.go"))
				if len(files) == 0 {
					t.Errorf("%s: %s names %s, which has no tests", path, c, p[1])
				}
				for _, f := range files {
					b, _ := os.ReadFile(f)
					for _, fn := range funcs.FindAllStringSubmatch(string(b), -1) {
						names = append(names, fn[1])
					}
				}
			}
			if len(names) == 0 {
				continue
			}
			for _, p := range pattern.FindAllStringSubmatch(m[1], -1) {
				expr := strings.Trim(p[2], "'")
				if expr == "^$" || expr == "." {
					continue
				}
				prefix := map[string]string{"run": "Test", "bench": "Benchmark"}[p[1]]
				for _, alt := range strings.Split(expr, "|") {
					n++
					re := regexp.MustCompile(alt)
					if !slices.ContainsFunc(names, func(name string) bool {
						return strings.HasPrefix(name, prefix) && re.MatchString(name)
					}) {
						t.Errorf("%s: no %s matches %q in the packages of: %s", path, prefix, alt, c)
					}
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d test and benchmark names found in the docs' go test commands", n)
	}
}

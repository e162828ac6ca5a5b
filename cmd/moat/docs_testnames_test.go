package main

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsCitedTestsExist checks that every test, benchmark and fuzz
// target the docs cite (TestX, BenchmarkX/sub, FuzzX) is a func of some
// _test.go file of the repository, and a cited subtest a name its package
// passes to t.Run or b.Run: docs/security.md maps
// each promise to the tests that prove it, and a renamed test would leave
// a promise that nothing proves.
func TestDocsCitedTestsExist(t *testing.T) {
	funcs := map[string]string{} // name -> its package's _test.go sources
	pkgs := map[string]string{}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)\w+)\(`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			pkgs[filepath.Dir(path)] += string(b)
			for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
				funcs[m[1]] = filepath.Dir(path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for f, dir := range funcs {
		funcs[f] = pkgs[dir]
	}
	if funcs["TestDocsCitedTestsExist"] == "" {
		t.Fatal("the walk of the _test.go files does not find this test")
	}

	docs, _ := filepath.Glob("../../docs/*.md")
	docs = append(docs, "../../README.md", "../../clients/js/README.md", "../../examples/react-vite/README.md", "../../deploy/helm/moat/README.md")
	names := slices.Collect(maps.Keys(funcs))
	name := regexp.MustCompile(`\b((?:Test|Benchmark|Fuzz)[A-Z0-9_]\w*)(?:/([^\s/,;()` + "`" + `|]+))?`)
	n := 0
	for _, path := range docs {
		for _, line := range strings.Split(readDoc(t, path), "\n") {
			for _, m := range name.FindAllStringSubmatch(line, -1) {
				n++
				src, ok := funcs[m[1]]
				switch {
				case !ok && strings.Contains(line, "go test ") && slices.ContainsFunc(names, func(f string) bool { return strings.HasPrefix(f, m[1]) }):
					// a -run or -bench pattern may name a prefix
				case !ok:
					t.Errorf("%s cites %s, which no _test.go declares", path, m[1])
				case m[2] != "" && !strings.Contains(src, `"`+m[2]+`"`):
					t.Errorf("%s cites %s/%s, but no _test.go of its package names a subtest %q", path, m[1], m[2], m[2])
				}
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d test names cited in the docs", n)
	}
}

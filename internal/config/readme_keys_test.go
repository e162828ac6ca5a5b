package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeRows returns the rows of README.md's tables that name keys in their
// first column: each row's keys, a bare name after a dotted key standing
// for its sibling (`server.read_timeout`, `idle_timeout`), and the whole
// row's text.
func readmeRows(t *testing.T) (keys []map[string]bool, text []string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| ([^|]*`[^|]*) \\|.*$")
	key := regexp.MustCompile("`([a-z0-9_]+(?:\\[\\])?(?:\\.[a-z0-9_]+(?:\\[\\])?)*)`")
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		ks, parent := map[string]bool{}, ""
		for _, k := range key.FindAllStringSubmatch(m[1], -1) {
			name := k[1]
			if i := strings.LastIndex(name, "."); i >= 0 {
				parent = name[:i+1]
			} else {
				name = parent + name
			}
			ks[name] = true
		}
		keys, text = append(keys, ks), append(text, m[0])
	}
	return keys, text
}

// configKeys returns every key path moat decodes, leaves and the blocks
// holding them (a list of blocks written with []), each marked whether it
// is a leaf.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			keys[path] = false
			walk(t.Elem(), path+"[]")
			return
		}
		if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
			keys[path] = true
			return
		}
		keys[path] = false
		for name, idx := range structFields(t) {
			walk(t.FieldByIndex(idx).Type, strings.TrimPrefix(path+"."+name, "."))
		}
	}
	walk(reflect.TypeFor[Config](), "")
	delete(keys, "")
	return keys
}

// TestReadmeKeysExist: every dotted key README.md's tables name in their
// first column is a key moat decodes, so the reference invents no setting
// (a renamed key fails here, not in a user's moat check).
func TestReadmeKeysExist(t *testing.T) {
	rows, _ := readmeRows(t)
	known := configKeys()
	var unknown []string
	n := 0
	for _, ks := range rows {
		for k := range ks {
			n++
			// Dotted paths only: a bare word in backticks may be a value.
			if _, ok := known[k]; strings.Contains(k, ".") && !ok {
				unknown = append(unknown, k)
			}
		}
	}
	slices.Sort(unknown)
	if len(unknown) > 0 {
		t.Errorf("README.md names keys moat does not know: %v", unknown)
	}
	if n < 40 {
		t.Errorf("found %d keys in README.md's tables, want at least 40", n)
	}
}

// TestEveryKeyInReadme: every key moat decodes is in README.md's tables:
// named in a row's first column, or a field of a block so named whose row
// spells the field's name (`routes[].token_exchange`: `{audience: …}`).
func TestEveryKeyInReadme(t *testing.T) {
	rows, text := readmeRows(t)
	documented := func(k string) bool {
		for i, ks := range rows {
			if ks[k] {
				return true
			}
			for p := k; strings.Contains(p, "."); {
				p = strings.TrimSuffix(p[:strings.LastIndex(p, ".")], "[]")
				field := k[strings.LastIndex(k, ".")+1:]
				if ks[p] && regexp.MustCompile(`\b`+field+`\b`).MatchString(text[i]) {
					return true
				}
			}
		}
		return false
	}
	var missing []string
	for k, leaf := range configKeys() {
		// A frontend's keys mean what the top-level keys of the same name do.
		if rest, ok := strings.CutPrefix(k, "frontends[]."); ok && rest != "name" && documented(rest) {
			continue
		}
		if leaf && !documented(k) {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("README.md's configuration tables do not mention: %v", missing)
	}
}

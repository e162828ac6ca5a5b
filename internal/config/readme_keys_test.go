package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReadmeKeysExist: every dotted key README.md's tables name in their
// first column is a key moat decodes, so the reference invents no setting
// (a renamed key fails here, not in a user's moat check).
func TestReadmeKeysExist(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| ([^|]*`[^|]*) \\|")
	key := regexp.MustCompile("`([a-z_]+(?:\\[\\])?(?:\\.[a-z_]+(?:\\[\\])?)*)`")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		for _, k := range key.FindAllStringSubmatch(m[1], -1) {
			documented[k[1]] = true
		}
	}
	// known holds every key path moat decodes: leaves and the blocks
	// holding them, a list of blocks written with [].
	known := map[string]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		known[path] = true
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			walk(t.Elem(), path+"[]")
			return
		}
		if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
		for name, idx := range structFields(t) {
			walk(t.FieldByIndex(idx).Type, strings.TrimPrefix(path+"."+name, "."))
		}
	}
	walk(reflect.TypeFor[Config](), "")
	var unknown []string
	for k := range documented {
		// Dotted paths only: a bare word in backticks may be a value.
		if strings.Contains(k, ".") && !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	if len(unknown) > 0 {
		t.Errorf("README.md names keys moat does not know: %v", unknown)
	}
	if len(documented) < 40 {
		t.Errorf("found %d keys in README.md's tables, want at least 40", len(documented))
	}
}

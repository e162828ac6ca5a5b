package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
)

// Diff lists the key paths whose values differ between a and b, as a
// person writes them in the file (session.idle_timeout, routes[1].upstream,
// routes when the lists differ in length). Secrets are compared, never
// shown: only their keys are named.
func Diff(a, b *Config) []string {
	var out []string
	diff(reflect.ValueOf(*a), reflect.ValueOf(*b), "", &out)
	return out
}

func diff(a, b reflect.Value, path string, out *[]string) {
	switch a.Kind() {
	case reflect.Struct:
		// The key names are those decode accepts (structFields), in field order.
		fields := structFields(a.Type())
		names := slices.SortedFunc(maps.Keys(fields), func(x, y string) int { return slices.Compare(fields[x], fields[y]) })
		for _, name := range names {
			diff(a.FieldByIndex(fields[name]), b.FieldByIndex(fields[name]), join(path, name), out)
		}
		return
	case reflect.Slice:
		if a.Len() == b.Len() && a.Type().Elem().Kind() == reflect.Struct {
			for i := range a.Len() {
				diff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
			}
			return
		}
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}

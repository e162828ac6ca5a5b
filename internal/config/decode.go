package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moat-bff/moat/internal/secret"
)

// KeyError is one problem with one configuration key, named by its path in
// the file (routes[0].token), never by a Go type.
type KeyError struct {
	Key  string // e.g. routes[0].tokn
	Line int    // line in the file; 0 when unknown
	Msg  string // what is wrong and how to fix it
}

func (e *KeyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", e.Key, e.Msg, e.Line)
	}
	return e.Key + ": " + e.Msg
}

// decoder fills a value from a YAML node tree by walking both, so that it
// can go on after a problem and name each by its key path. It replaces
// yaml's own strict decoding, which stops at the first unknown key and
// names Go types ("field tokn not found in type config.Route").
type decoder struct {
	errs []error
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	if path == "" {
		path = "(top level)"
	}
	d.errs = append(d.errs, &KeyError{Key: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// linePrefix is what yaml and our own UnmarshalYAML methods put before a
// message; the KeyError says the line itself.
var linePrefix = regexp.MustCompile(`^(yaml: )?(unmarshal errors:\s*)?(line \d+: )?`)

// decode fills v (settable) from n. path is the key path so far; name is
// the last key, which selects size parsing for *_bytes keys.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path, name string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // key: (nothing) leaves the default
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(path, n, "%s", linePrefix.ReplaceAllString(err.Error(), ""))
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, name)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "expected a list (e.g. [a, b] or one \"- item\" per line), got %s", describe(n, v.Type()))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), name)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			d.fail(path, n, "expected a mapping (key: value), got %s", describe(n, v.Type()))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(n.Content[i+1], e, join(path, k), k)
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "expected a single value, got %s", describe(n, v.Type()))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.fail(path, n, "expected true or false, got %s", describe(n, v.Type()))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "expected a number, got %s", describe(n, v.Type()))
			return
		}
		var i int64
		var err error
		if strings.HasSuffix(name, "_bytes") {
			i, err = ParseSize(n.Value)
		} else if err = n.Decode(&i); err != nil {
			err = fmt.Errorf("expected a whole number, got %s", describe(n, v.Type()))
		}
		if err == nil && v.OverflowInt(i) {
			err = fmt.Errorf("%s is too large", n.Value)
		}
		if err != nil {
			d.fail(path, n, "%v", err)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.Decode(&u) != nil || v.OverflowUint(u) {
			d.fail(path, n, "expected a whole number of at least 0, got %s", describe(n, v.Type()))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil {
			d.fail(path, n, "expected a number, got %s", describe(n, v.Type()))
			return
		}
		v.SetFloat(f)
	default:
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(path, n, "%s", linePrefix.ReplaceAllString(err.Error(), ""))
		}
	}
}

// decodeStruct fills a struct from a mapping, reporting unknown and
// repeated keys.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping of keys (%s), got %s", strings.Join(knownKeys(v.Type()), ", "), describe(n, v.Type()))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key := kn.Value
		kpath := join(path, key)
		if seen[key] {
			d.fail(kpath, kn, "given twice; keep one")
			continue
		}
		seen[key] = true
		idx, ok := fields[key]
		if !ok {
			d.fail(kpath, kn, "unknown key%s", suggest(key, knownKeys(v.Type())))
			continue
		}
		d.decode(vn, v.FieldByIndex(idx), kpath, key)
	}
}

// structFields maps the YAML keys of t, inline structs included, to field
// indexes.
func structFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") && f.Type.Kind() == reflect.Struct {
			for k, idx := range structFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
	}
	return out
}

func knownKeys(t reflect.Type) []string {
	var keys []string
	for k := range structFields(t) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// suggest names the known key nearest to key, or lists them all when none
// is near.
func suggest(key string, known []string) string {
	best, bestDist := "", math.MaxInt
	for _, k := range known {
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" && (bestDist <= 2 || bestDist <= len(key)/3 || strings.Contains(best, strings.ToLower(key)) && len(key) >= 3) {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return fmt.Sprintf("; known keys here: %s", strings.Join(known, ", "))
}

// editDistance is the Levenshtein distance of a and b, counting a swap of
// two neighbouring letters as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node, t reflect.Type) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if holdsSecret(t, 0) {
		// A secret written one level too high (session.keys: KEY,
		// admin: TOKEN): the error is printed and logged, the value must
		// not be.
		return "a single value"
	}
	return strconv.Quote(n.Value)
}

var secretType = reflect.TypeFor[secret.String]()

// holdsSecret reports whether a value of type t is or contains a
// secret.String.
func holdsSecret(t reflect.Type, depth int) bool {
	if t == secretType {
		return true
	}
	if depth > 8 {
		return true // deeper than any configuration type: assume the worst
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return holdsSecret(t.Elem(), depth+1)
	case reflect.Struct:
		for i := range t.NumField() {
			if holdsSecret(t.Field(i).Type, depth+1) {
				return true
			}
		}
	}
	return false
}

// sizeUnits are the suffixes ParseSize accepts, IEC (KiB = 1024) and SI
// (kB = 1000), matched case-insensitively.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"b", 1},
}

// ParseSize reads a byte size: a plain number of bytes (1048576) or a whole
// number with a unit, 10MiB, 32KiB, 1GiB (powers of 1024) or 5MB, 100kB
// (powers of 1000).
func ParseSize(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size like 10MiB, 32KiB or 1048576 (bytes)", s)
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	t = strings.ReplaceAll(t, "_", "")
	if t == "" || strings.ContainsAny(t, "+-") {
		return 0, bad
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, bad
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// keyOf returns the key path an error of Validate or decode names: the
// text before its first ": ".
func keyOf(err error) string {
	var ke *KeyError
	if errors.As(err, &ke) {
		return ke.Key
	}
	k, _, _ := strings.Cut(err.Error(), ": ")
	return k
}

// under reports whether key is path or lies below it.
func under(key, path string) bool {
	return key == path || strings.HasPrefix(key, path+".") || strings.HasPrefix(key, path+"[")
}

// flatten splits a joined error into its parts.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

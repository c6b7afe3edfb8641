package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// The YAML is decoded by walking yaml.v3's node tree into the raw structs
// below rather than with Decoder.KnownFields(true): KnownFields reports an
// unknown key as "line 5: field colour not found in type config.rawOutput",
// and a type error as "cannot unmarshal !!str into int", neither of which
// names the YAML path. The walk is just as strict (unknown and repeated keys
// are errors), names the path of every problem, expands ${NAME} in string
// scalars only, and keeps going after a problem so that every one is
// reported.

// maxNodes bounds the work of one decode, so that a small file full of
// aliases (a "billion laughs") cannot make it expand without end.
const maxNodes = 1_000_000

// decoder walks a YAML node tree into a raw struct, collecting problems.
type decoder struct {
	lookupEnv func(string) (string, bool)
	errs      Errors
	lines     map[string]int // YAML path -> line, to place validation errors
	budget    int            // nodes left to visit
	budgetErr *FieldError    // set when the budget ran out
}

func newDecoder(lookupEnv func(string) (string, bool)) *decoder {
	return &decoder{lookupEnv: lookupEnv, lines: map[string]int{}, budget: maxNodes}
}

func (d *decoder) fail(path, value string, line int, msg string) {
	d.errs = append(d.errs, &FieldError{Path: path, Value: value, Msg: msg, Line: line})
}

// yamlErrRE matches yaml.v3's syntax errors: "yaml: line 3: did not find expected key".
var yamlErrRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error into a FieldError with its line.
func syntaxError(err error) *FieldError {
	msg := err.Error()
	if m := yamlErrRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &FieldError{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// parseDocument returns the root node of the single YAML document in data
// (nil for an empty document).
func parseDocument(data []byte) (root *yaml.Node, fe *FieldError) {
	defer func() {
		// yaml.v3 is a port of a C parser; should some input still make it
		// panic, report bad YAML rather than crash the daemon or `check`.
		if r := recover(); r != nil {
			root, fe = nil, &FieldError{Msg: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, nil
	case err != nil:
		return nil, syntaxError(err)
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(err)
		}
		if len(extra.Content) == 0 || isNull(extra.Content[0]) && extra.Content[0].Value == "" {
			continue // a trailing "---" or "..." with nothing after it
		}
		return nil, &FieldError{Line: extra.Content[0].Line,
			Msg: "a second YAML document starts here; keep the whole config in one document"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// nodeKind names a node's kind for an error message.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

var (
	secretType    = reflect.TypeFor[Secret]()
	unmarshalType = reflect.TypeFor[yaml.Unmarshaler]()
)

// want describes what a Go type expects, for an error message.
func want(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a duration such as 90s, 24h or 30d"
	case reflect.TypeFor[FileMode]():
		return `an octal file mode such as "0640"`
	}
	switch t.Kind() {
	case reflect.Struct:
		return "a mapping of keys"
	case reflect.Slice:
		return "a list"
	case reflect.Int:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	default:
		return "a string"
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// exhausted counts a visit to n and says whether the budget is spent.
func (d *decoder) exhausted(n *yaml.Node) bool {
	if d.budget--; d.budget >= 0 {
		return false
	}
	if d.budgetErr == nil {
		d.budgetErr = &FieldError{Line: n.Line, Msg: "the config is too large or uses too many aliases"}
		d.errs = append(d.errs, d.budgetErr)
	}
	return true
}

// decode stores node n, found at path, into v.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	if d.exhausted(n) {
		return
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(path, "", n.Line, "alias to an unknown anchor")
			return
		}
		n = n.Alias
	}
	if isNull(n) {
		return // `key:` or `key: ~` leaves the key unset
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		p, before := reflect.New(t.Elem()), len(d.errs)
		d.decode(n, path, p.Elem())
		if len(d.errs) == before {
			v.Set(p) // a value that failed to decode stays unset
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalType) {
		text, ok := d.scalar(n, path, t)
		if !ok {
			return
		}
		c := *n
		c.Value = text
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(&c); err != nil {
			d.fail(path, text, n.Line, err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.mapping(n, path, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.mismatch(n, path, t)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		if text, ok := d.scalar(n, path, t); ok {
			v.SetString(text)
		}
	case reflect.Int:
		text, ok := d.scalar(n, path, t)
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 10, 0)
		if err != nil {
			d.fail(path, text, n.Line, "must be "+want(t))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		text, ok := d.scalar(n, path, t)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(text, "_", ""), 64)
		if err != nil {
			d.fail(path, text, n.Line, "must be "+want(t))
			return
		}
		v.SetFloat(f)
	default:
		panic("config: no decoding for " + t.String()) // a raw struct field of an unsupported type
	}
}

// mismatch reports a node of the wrong shape for type t.
func (d *decoder) mismatch(n *yaml.Node, path string, t reflect.Type) {
	value := ""
	if n.Kind == yaml.ScalarNode {
		value = n.Value
		if t == secretType {
			value = redacted
		}
	}
	d.fail(path, value, n.Line, fmt.Sprintf("must be %s, not %s", want(t), nodeKind(n)))
}

// scalar returns the text of a scalar node, ${NAME}-expanded if it is a
// string.
func (d *decoder) scalar(n *yaml.Node, path string, t reflect.Type) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(n, path, t)
		return "", false
	}
	if n.ShortTag() != "!!str" || !strings.Contains(n.Value, "$") {
		return n.Value, true
	}
	text, err := expandEnv(n.Value, d.lookupEnv)
	if err != nil {
		d.fail(path, "", n.Line, err.Error()) // the value may be a secret: not echoed
		return "", false
	}
	return text, true
}

// mapping decodes a mapping node into struct v, by the fields' yaml tags.
func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(n, path, v.Type())
		return
	}
	sf := fieldsOf(v.Type())
	seen := make(map[string]int, len(n.Content)/2) // key -> line
	for _, kv := range d.pairs(n, path, seen, 0) {
		key, val := kv[0], kv[1]
		if key.Kind != yaml.ScalarNode {
			d.fail(path, "", key.Line, "keys must be plain names, not "+nodeKind(key))
			continue
		}
		kpath := joinKey(path, key.Value)
		i, ok := sf.index[key.Value]
		if !ok {
			d.fail(kpath, "", key.Line, unknownKey(key.Value, sf.names))
			continue
		}
		d.decode(val, kpath, v.Field(i))
	}
}

// structFields are a raw struct's YAML keys: field index by key, and the
// keys in field order (for suggestions).
type structFields struct {
	index map[string]int
	names []string
}

// fieldCache holds structFields by type: a config with thousands of
// channels decodes the same few raw structs thousands of times.
var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if sf, ok := fieldCache.Load(t); ok {
		return sf.(*structFields)
	}
	sf := &structFields{index: map[string]int{}}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		sf.index[name] = i
		sf.names = append(sf.names, name)
	}
	fieldCache.Store(t, sf)
	return sf
}

// pairs returns the key/value pairs of mapping n, resolving `<<` merge keys:
// keys written in n win over merged ones, earlier merges over later ones.
// A key written twice in n is an error.
func (d *decoder) pairs(n *yaml.Node, path string, seen map[string]int, depth int) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Kind == yaml.ScalarNode && key.Value == "<<" && key.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if key.Kind == yaml.ScalarNode {
			if line, dup := seen[key.Value]; dup {
				if depth == 0 {
					d.fail(joinKey(path, key.Value), "", key.Line,
						fmt.Sprintf("key is set twice (first on line %d); keep one", line))
				}
				continue
			}
			seen[key.Value] = key.Line
		}
		out = append(out, [2]*yaml.Node{key, val})
	}
	for _, m := range merges {
		if d.exhausted(m) || depth > 32 {
			return out
		}
		if m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		var sources []*yaml.Node
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		} else {
			sources = []*yaml.Node{m}
		}
		for _, s := range sources {
			if s.Kind == yaml.AliasNode && s.Alias != nil {
				s = s.Alias
			}
			if s.Kind != yaml.MappingNode {
				d.fail(joinKey(path, "<<"), "", s.Line, "a merge key (<<) must merge a mapping or a list of mappings")
				continue
			}
			out = append(out, d.pairs(s, path, seen, depth+1)...)
		}
	}
	return out
}

// unknownKey explains an unknown key, suggesting the closest valid one.
func unknownKey(key string, valid []string) string {
	best, bestDist := "", 3
	for _, v := range valid {
		if dist := editDistance(strings.ToLower(key), v); dist < bestDist {
			best, bestDist = v, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key; did you mean %s?", best)
	}
	sorted := append([]string(nil), valid...)
	sort.Strings(sorted)
	return "unknown key; valid keys here: " + strings.Join(sorted, ", ")
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 {
		return len(a) // not a typo of a short key name
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// envNameRE is a valid environment variable name for ${NAME}.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${NAME} in s by the variable's value. "$$" is a
// literal "$" (so "$${X}" is the literal text "${X}"); any other "$" is
// kept as it is. Errors name the variable, never a value.
func expandEnv(s string, lookupEnv func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New("unterminated ${; write ${NAME} to use an environment variable, or $$ for a literal $")
			}
			name := s[i+2 : i+2+end]
			if !envNameRE.MatchString(name) {
				return "", errors.New("${...} must hold an environment variable name (letters, digits and _); write $$ for a literal $")
			}
			value, ok := lookupEnv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(value)
			s = s[i+2+end+1:]
		default:
			b.WriteByte('$')
			s = s[i+1:]
		}
	}
}

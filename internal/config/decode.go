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
	budget    int         // nodes left to visit
	budgetErr *FieldError // set when the budget ran out
	at        []step      // path of the node being decoded

	// visit, if set, is called with the path and line of every node
	// decode visits; tests check lineFinder against it.
	visit func(path string, line int)
}

func newDecoder(lookupEnv func(string) (string, bool)) *decoder {
	return &decoder{lookupEnv: lookupEnv, budget: maxNodes}
}

// fail reports a problem with the node being decoded.
func (d *decoder) fail(value string, line int, msg string) {
	d.failAt(d.path(), value, line, msg)
}

// failAt reports a problem at path (a key of the node being decoded).
func (d *decoder) failAt(path, value string, line int, msg string) {
	d.errs = append(d.errs, &FieldError{Path: path, Value: value, Msg: msg, Line: line})
}

// A step is one step of the YAML path of the node being decoded: a key
// of a mapping or an index in a list. The decoder keeps the path as a
// stack of steps and spells it out ("channels[2].outputs[0].mode") only
// when it reports a problem: a string for every node, almost none of them
// ever read, took about 10 ms of the 57 ms decode spent on 10,000
// channels.
type step struct {
	key   string // a mapping key, if index < 0
	index int    // a list index
}

// path spells out the path of the node being decoded; "" at the root.
func (d *decoder) path() string {
	p := ""
	for _, s := range d.at {
		if s.index >= 0 {
			p = indexPath(p, s.index)
		} else {
			p = joinKey(p, s.key)
		}
	}
	return p
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

// target is the node n stands for: the anchored node if n is an alias to
// a known anchor, else n itself.
func target(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
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

// indexPath is the path of item i of the list at path.
func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

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

// decode stores node n, found at d.at, into v.
func (d *decoder) decode(n *yaml.Node, v reflect.Value) {
	if d.exhausted(n) {
		return
	}
	if d.visit != nil {
		d.visit(d.path(), n.Line)
	}
	if n.Kind == yaml.AliasNode && n.Alias == nil {
		d.fail("", n.Line, "alias to an unknown anchor")
		return
	}
	if n = target(n); isNull(n) {
		return // `key:` or `key: ~` leaves the key unset
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		pv, before := reflect.New(t.Elem()), len(d.errs)
		d.decode(n, pv.Elem())
		if len(d.errs) == before {
			v.Set(pv) // a value that failed to decode stays unset
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalType) {
		text, ok := d.scalar(n, t)
		if !ok {
			return
		}
		c := *n
		c.Value = text
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(&c); err != nil {
			d.fail(text, n.Line, err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.mapping(n, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.mismatch(n, t)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		d.items(n, s)
		v.Set(s)
	case reflect.String:
		if text, ok := d.scalar(n, t); ok {
			v.SetString(text)
		}
	case reflect.Int:
		text, ok := d.scalar(n, t)
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 10, 0)
		if err != nil {
			d.fail(text, n.Line, "must be "+want(t))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		text, ok := d.scalar(n, t)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(text, "_", ""), 64)
		if err != nil {
			d.fail(text, n.Line, "must be "+want(t))
			return
		}
		v.SetFloat(f)
	default:
		panic("config: no decoding for " + t.String()) // a raw struct field of an unsupported type
	}
}

// items decodes the items of list n into slice s, of the same length.
func (d *decoder) items(n *yaml.Node, s reflect.Value) {
	for i, item := range n.Content {
		d.at = append(d.at, step{index: i})
		d.decode(item, s.Index(i))
		d.at = d.at[:len(d.at)-1]
	}
}

// mismatch reports a node of the wrong shape for type t.
func (d *decoder) mismatch(n *yaml.Node, t reflect.Type) {
	value := ""
	if n.Kind == yaml.ScalarNode {
		value = n.Value
		if t == secretType {
			value = redacted
		}
	}
	d.fail(value, n.Line, fmt.Sprintf("must be %s, not %s", want(t), nodeKind(n)))
}

// scalar returns the text of a scalar node, ${NAME}-expanded if it is a
// string.
func (d *decoder) scalar(n *yaml.Node, t reflect.Type) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(n, t)
		return "", false
	}
	if n.ShortTag() != "!!str" || !strings.Contains(n.Value, "$") {
		return n.Value, true
	}
	text, err := expandEnv(n.Value, d.lookupEnv)
	if err != nil {
		d.fail("", n.Line, err.Error()) // the value may be a secret: not echoed
		return "", false
	}
	return text, true
}

// mapping decodes a mapping node into struct v, by the fields' yaml tags.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(n, v.Type())
		return
	}
	sf := fieldsOf(v.Type())
	for _, kv := range d.pairs(n) {
		key, val := kv[0], kv[1]
		if key.Kind != yaml.ScalarNode {
			d.fail("", key.Line, "keys must be plain names, not "+nodeKind(key))
			continue
		}
		i, ok := sf.index[key.Value]
		if !ok {
			d.failAt(joinKey(d.path(), key.Value), "", key.Line, unknownKey(key.Value, sf.names))
			continue
		}
		d.at = append(d.at, step{key: key.Value, index: -1})
		d.decode(val, v.Field(i))
		d.at = d.at[:len(d.at)-1]
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
func (d *decoder) pairs(n *yaml.Node) [][2]*yaml.Node {
	ps := pairList{kvs: make([][2]*yaml.Node, 0, len(n.Content)/2)}
	d.addPairs(&ps, n, 0)
	return ps.kvs
}

// addPairs adds the pairs of n, then those it merges, to those of a
// mapping that merges n depth levels deep.
func (d *decoder) addPairs(ps *pairList, n *yaml.Node, depth int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Kind == yaml.ScalarNode && key.Value == "<<" && key.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if key.Kind == yaml.ScalarNode {
			if line, dup := ps.line(key.Value); dup {
				if depth == 0 {
					d.failAt(joinKey(d.path(), key.Value), "", key.Line,
						fmt.Sprintf("key is set twice (first on line %d); keep one", line))
				}
				continue
			}
		}
		ps.add(key, val)
	}
	for _, m := range merges {
		if d.exhausted(m) || depth > 32 {
			return
		}
		m = target(m)
		var sources []*yaml.Node
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		} else {
			sources = []*yaml.Node{m}
		}
		for _, s := range sources {
			if s = target(s); s.Kind != yaml.MappingNode {
				d.failAt(joinKey(d.path(), "<<"), "", s.Line, "a merge key (<<) must merge a mapping or a list of mappings")
				continue
			}
			d.addPairs(ps, s, depth+1)
		}
	}
}

// pairList is the pairs of a mapping as pairs collects them. Whether a key
// is there already is found by looking through them while they are few,
// and in a map after: a map and a growing slice for each of the 20,000
// mappings of 10,000 channels took about 10 ms of decode's 26 ms.
type pairList struct {
	kvs  [][2]*yaml.Node
	seen map[string]int // key -> line, once there are more than scanPairs
}

const scanPairs = 16

// line returns the line of key, if it is there.
func (ps *pairList) line(key string) (int, bool) {
	if ps.seen != nil {
		line, ok := ps.seen[key]
		return line, ok
	}
	for _, kv := range ps.kvs {
		if kv[0].Kind == yaml.ScalarNode && kv[0].Value == key {
			return kv[0].Line, true
		}
	}
	return 0, false
}

func (ps *pairList) add(key, val *yaml.Node) {
	ps.kvs = append(ps.kvs, [2]*yaml.Node{key, val})
	switch {
	case ps.seen != nil:
		if key.Kind == yaml.ScalarNode {
			ps.seen[key.Value] = key.Line
		}
	case len(ps.kvs) > scanPairs:
		ps.seen = make(map[string]int, 2*len(ps.kvs))
		for _, kv := range ps.kvs {
			if kv[0].Kind == yaml.ScalarNode {
				ps.seen[kv[0].Value] = kv[0].Line
			}
		}
	}
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

// lineFinder finds the line of a node by its YAML path, to place a
// validation error. It gives the line decode saw first at that path (that
// of the alias where one was written), following aliases and `<<` merge
// keys as decode does, and 0 where decode never went. Decode used to note
// the line of every node it visited in a map: about 170,000 entries at
// 10,000 channels, nearly all never read, which took 28 ms of decode's
// 57 ms. A path is now looked up only when a problem is reported.
type lineFinder struct {
	root  *yaml.Node                     // nil if the document is empty
	pairs map[*yaml.Node][][2]*yaml.Node // of the mappings looked into
	// d gets the pairs. Its errors are decode's, reported already; its
	// budget cannot run out, as it looks into only mappings that decode
	// went through (without running out), and into each once.
	d decoder
}

func newLineFinder(root *yaml.Node) *lineFinder {
	return &lineFinder{root: root, d: decoder{budget: maxNodes}}
}

// line returns the line of the node at path p, or 0.
func (l *lineFinder) line(p string) int {
	n, t := l.root, reflect.TypeFor[rawConfig]()
	if n == nil || isNull(n) {
		return 0 // decode never ran
	}
	for first := true; p != ""; first = false {
		// Step into n as decode does (an alias to an unknown anchor
		// matches no case below).
		if n = target(n); isNull(n) {
			return 0
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(unmarshalType) {
			return 0
		}
		switch {
		case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
			if !first {
				if p[0] != '.' {
					return 0
				}
				p = p[1:]
			}
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			key := p[:end]
			p = p[end:]
			i, ok := fieldsOf(t).index[key]
			if !ok {
				return 0
			}
			if n = l.value(n, key); n == nil {
				return 0
			}
			t = t.Field(i).Type
		case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
			end := strings.IndexByte(p, ']')
			if p[0] != '[' || end < 0 {
				return 0
			}
			i, err := strconv.Atoi(p[1:end])
			if err != nil || i < 0 || i >= len(n.Content) || strconv.Itoa(i) != p[1:end] {
				return 0
			}
			n, t, p = n.Content[i], t.Elem(), p[end+1:]
		default:
			return 0
		}
	}
	return n.Line
}

// value returns the value of key in mapping n as decode's mapping sees it
// (after merges), or nil. A mapping's pairs are kept: they are looked up
// once for each problem in it, and with merges of merges getting them can
// take as long as decoding the mapping did; kept, each costs at most
// what decode spent on it once.
func (l *lineFinder) value(n *yaml.Node, key string) *yaml.Node {
	kvs, ok := l.pairs[n]
	if !ok {
		if l.pairs == nil {
			l.pairs = map[*yaml.Node][][2]*yaml.Node{}
		}
		kvs = l.d.pairs(n)
		l.pairs[n] = kvs
	}
	for _, kv := range kvs {
		if kv[0].Kind == yaml.ScalarNode && kv[0].Value == key {
			return kv[1]
		}
	}
	return nil
}

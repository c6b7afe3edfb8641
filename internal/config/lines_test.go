package config

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestErrorLinesThroughAliases checks the lines of validation errors about
// values reached through aliases and merge keys, and about keys left out
// of an aliased channel (the line is then the alias's). The lines are
// those decode's old map of every node gave.
func TestErrorLinesThroughAliases(t *testing.T) {
	_, err := parseYAML(`defaults: {jitter: 0.5}
channels:
  - &base
    id: "1"
    key_id: &kid k
    private_key_file: /k
    channel_secret: s
    outputs:
      - path: /a
        format: xml
  - <<: *base
    name: two
  - *base
  - <<: [{kind: stateless, rotate_before: 20m}, *base]
    id: "4"
    key_id: *kid
    revoke_after: 1h
  - &five
    id: "5"
    name: &n x/y
  - {id: "6", name: *n, outputs: [{path: /a}]}
  - *five
`, nil)
	errs, ok := err.(Errors)
	if !ok {
		t.Fatalf("error %v", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Path))
	}
	want := []string{
		"4 channels[1].id",
		"4 channels[2].id",
		"9 channels[1].outputs[0].path",
		"9 channels[2].outputs[0].path",
		"9 channels[3].outputs[0].path",
		"10 channels[0].outputs[0].format",
		"10 channels[1].outputs[0].format",
		"10 channels[2].outputs[0].format",
		"10 channels[3].outputs[0].format",
		"14 channels[3].rotate_before",
		"17 channels[3].revoke_after",
		"18 channels[4].key_id",
		"18 channels[4].private_key_file",
		"18 channels[4].channel_secret",
		"19 channels[6].id",
		"20 channels[4].name",
		"20 channels[6].name",
		"21 channels[5].key_id",
		"21 channels[5].private_key_file",
		"21 channels[5].channel_secret",
		"21 channels[5].name",
		"21 channels[5].outputs[0].path",
		"22 channels[6].key_id",
		"22 channels[6].private_key_file",
		"22 channels[6].channel_secret",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLineFinderMatchesDecode checks, on generated configs full of
// aliases, merge keys, repeated keys and values of the wrong shape, that
// lineFinder gives for every path decode visits the line decode saw
// there first, and 0 for paths decode never visited.
func TestLineFinderMatchesDecode(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []string{"~", "x", "'1'", "[a, b]", "{path: /o}", "[{path: /o, mode: '0600'}]",
		"[{exec: [a], signal: HUP}]", "*a0", "*a1", "*a2", "{<<: *a1, colour: red}", "20m"}
	keys := []string{"id", "name", "kind", "key_id", "channel_secret", "rotate_before", "jitter",
		"outputs", "on_rotate", "colour", "<<", "<<"}
	checked := 0
	for range 300 {
		var b strings.Builder
		b.WriteString("channels:\n")
		for i := range 3 + r.IntN(20) {
			if i > 2 && r.IntN(4) == 0 {
				fmt.Fprintf(&b, "  - *a%d\n", r.IntN(3))
				continue
			}
			b.WriteString("  - ")
			if i < 3 {
				fmt.Fprintf(&b, "&a%d ", i)
			}
			b.WriteString("{")
			for k := range 1 + r.IntN(6) {
				if k > 0 {
					b.WriteString(", ")
				}
				key, value := keys[r.IntN(len(keys))], values[r.IntN(len(values))]
				if j := strings.Index(value, "*a"); i < 3 && j >= 0 && int(value[j+2]-'0') >= i {
					value = "x" // an alias before its anchor is an error
				}
				fmt.Fprintf(&b, "%s: %s", key, value)
			}
			b.WriteString("}\n")
		}
		b.WriteString("socket: {allowed_uids: [1, x, *a0], <<: *a2}\n")
		root, fe := parseDocument([]byte(b.String()))
		if fe != nil {
			t.Fatalf("%v in\n%s", fe, b.String())
		}
		first := map[string]int{}
		d := newDecoder(fakeEnv(nil))
		d.visit = func(p string, line int) {
			if _, ok := first[p]; !ok {
				first[p] = line
			}
		}
		var raw rawConfig
		d.decode(root, reflectValue(&raw))
		lf := newLineFinder(root)
		for p, line := range first {
			if got := lf.line(p); got != line {
				t.Fatalf("line(%q) = %d, decode saw line %d, in\n%s", p, got, line, b.String())
			}
			for _, q := range []string{p + ".id", p + ".colour", p + "[0]", p + "[07]", p + ".outputs[0].path", p + ".", p + "x"} {
				if _, ok := first[q]; !ok && lf.line(q) != 0 {
					t.Fatalf("line(%q) = %d; decode never went there, in\n%s", q, lf.line(q), b.String())
				}
			}
			checked++
		}
	}
	if checked < 10_000 {
		t.Errorf("only %d paths checked", checked)
	}
}

// TestKeySetTwice checks repeated keys in a mapping with more keys than
// pairList looks through before it builds a map.
func TestKeySetTwice(t *testing.T) {
	var b strings.Builder
	b.WriteString("channels:\n  - id: '1'\n")
	for i := range scanPairs + 4 {
		fmt.Fprintf(&b, "    u%d: x\n", i)
	}
	b.WriteString("    id: '2'\n    u3: y\n    <<: {u19: z, u20: z, key_id: k}\n    u20: w\n")
	_, err := parseYAML(b.String(), nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"channels[0].id: key is set twice (first on line 2); keep one",
		"channels[0].u3: key is set twice (first on line 6); keep one",
		"channels[0].u20: unknown key",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("no %q in\n%v", w, err)
		}
	}
	for _, no := range []string{"u19: key is set twice", "u20: key is set twice", "channels[0].key_id: required"} {
		if strings.Contains(err.Error(), no) {
			t.Errorf("%q in\n%v", no, err)
		}
	}
}

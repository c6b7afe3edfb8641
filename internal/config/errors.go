package config

import (
	"strconv"
	"strings"
)

// FieldError is one problem in a config file: the YAML path of the key
// (`channels[2].outputs[0].mode`), the offending value as written (empty
// when there is none, "<redacted>" for a secret) and what to do about it.
type FieldError struct {
	Path  string // YAML path; "" for a problem with the file as a whole
	Value string // the bad value, "" if none
	Msg   string // what is wrong and how to fix it
	Line  int    // 1-based line in the file, 0 if unknown; printed only when Path is ""
}

// Error formats the problem as `<path>: <quoted value>: <message>`, leaving
// out the value when there is none.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Path != "":
		b.WriteString(e.Path)
		b.WriteString(": ")
	case e.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	switch {
	case e.Value == redacted:
		b.WriteString(redacted + ": ")
	case e.Value != "":
		b.WriteString(strconv.Quote(e.Value))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config file, in file order.
type Errors []*FieldError

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so errors.As finds a *FieldError.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

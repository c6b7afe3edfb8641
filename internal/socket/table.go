package socket

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tokend/tokend/internal/rotator"
)

// WriteStatusTable writes st as an aligned table for people, with times
// in RFC 3339 UTC and relative to now:
//
//	CHANNEL   KIND  KEY ID    EXPIRES                          NEXT ROTATION ...
//	shop-bot  v2.1  536e453c  2025-04-03T05:05:06Z (in 29d23h)  ...
func WriteStatusTable(w io.Writer, st []rotator.ChannelStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tKIND\tKEY ID\tEXPIRES\tNEXT ROTATION\tSTATE\tORPHANS\tLAST ERROR")
	for _, s := range st {
		label := s.Name
		if label == "" {
			label = s.ID
		}
		state := "none"
		switch {
		case s.Valid:
			state = "valid"
		case !s.ExpiresAt.IsZero():
			state = "expired" // no replacement yet: LAST ERROR says why
		}
		lastErr := "-"
		if s.LastError != "" {
			lastErr = printable(s.LastError, 80)
			if !s.LastErrorAt.IsZero() {
				lastErr += " (" + relative(s.LastErrorAt, now) + ")"
			}
		}
		cells := []string{
			printable(label, 64), dash(printable(s.Kind, 16)), dash(shortKeyID(s.KeyID)),
			stamp(s.ExpiresAt, now), stamp(s.NextRotation, now), state, strconv.Itoa(s.Orphans), lastErr,
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// shortKeyID keeps the first 8 characters of a key ID, like a short
// commit hash: enough to tell tokens apart in a table.
func shortKeyID(id string) string {
	id = printable(id, 64)
	if utf8.RuneCountInString(id) <= 12 {
		return id
	}
	return string([]rune(id)[:8])
}

// stamp is t in RFC 3339 UTC and relative to now, or "-" for zero.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(t, now) + ")"
}

// relative says "in 29d23h", "5m ago" or "now".
func relative(t, now time.Time) string {
	d := t.Sub(now).Truncate(time.Second)
	switch {
	case d > 0:
		return "in " + span(d)
	case d < 0:
		return span(-d) + " ago"
	}
	return "now"
}

// span prints d with its two largest units: 29d23h, 5h3m, 12m5s, 45s.
func span(d time.Duration) string {
	const day = 24 * time.Hour
	two := func(a int64, ua string, b int64, ub string) string {
		if b == 0 {
			return fmt.Sprintf("%d%s", a, ua)
		}
		return fmt.Sprintf("%d%s%d%s", a, ua, b, ub)
	}
	switch {
	case d >= day:
		return two(int64(d/day), "d", int64(d%day/time.Hour), "h")
	case d >= time.Hour:
		return two(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "m")
	case d >= time.Minute:
		return two(int64(d/time.Minute), "m", int64(d%time.Minute/time.Second), "s")
	}
	return fmt.Sprintf("%ds", int64(d/time.Second))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable makes s safe for one table cell or one line of a message:
// control and format characters (tabs, newlines, escapes, bidi overrides)
// become spaces, invalid UTF-8 becomes U+FFFD, and it is cut to max runes
// with "...".
func printable(s string, max int) string {
	s = strings.Map(func(r rune) rune { // invalid bytes arrive as U+FFFD
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max-3]) + "..."
	}
	return s
}

package output

import (
	"fmt"
	"io"
)

// Format prints String for every verb, so no verb (%d, %x, %+v...) can
// reach the access token through fmt's field-by-field struct printing.
func (t Token) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }

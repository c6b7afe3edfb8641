package output

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The output formats.
const (
	FormatRaw  = "raw"  // the token bytes alone, no trailing newline
	FormatJSON = "json" // one JSON object and a newline
	FormatEnv  = "env"  // LINE_CHANNEL_ACCESS_TOKEN=<token> and a newline
)

// EnvVar is the variable the env format assigns.
const EnvVar = "LINE_CHANNEL_ACCESS_TOKEN"

// Render returns the file contents of t in format:
//
//   - raw: the access token, no trailing newline (it goes straight into an
//     Authorization header);
//   - json: {"channel_id","name","access_token","token_type","key_id",
//     "issued_at","expires_at"} in that order, on one line, followed by a
//     newline (a text file, and every JSON parser ignores it); times in
//     RFC 3339, UTC, whole seconds (truncated, so expires_at is never late);
//   - env: LINE_CHANNEL_ACCESS_TOKEN=<token> and a newline (dotenv), unquoted.
//
// A token that is empty or has a byte outside visible ASCII (a newline, a
// NUL, a space...) is refused: no bearer token contains one, and it would
// break the formats. The env format also refuses characters a shell or a
// dotenv parser would need quoted. Errors never contain the token.
func Render(format string, t Token) ([]byte, error) {
	switch format {
	case FormatRaw, FormatJSON, FormatEnv:
	default:
		return nil, fmt.Errorf("output: unknown format %q (want raw, json or env)", format)
	}
	if err := checkToken(format, t.AccessToken); err != nil {
		return nil, fmt.Errorf("output: render %s for channel %s: %w", format, t.ChannelID, err)
	}
	switch format {
	case FormatRaw:
		return []byte(t.AccessToken), nil
	case FormatEnv:
		return []byte(EnvVar + "=" + t.AccessToken + "\n"), nil
	}
	if b, ok := appendJSONPlain(t); ok {
		return b, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(jsonToken{
		ChannelID:   t.ChannelID,
		Name:        t.Name,
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		KeyID:       t.KeyID,
		IssuedAt:    t.IssuedAt.UTC().Format(time.RFC3339),
		ExpiresAt:   t.ExpiresAt.UTC().Format(time.RFC3339),
	})
	if err != nil { // strings only: cannot happen
		return nil, fmt.Errorf("output: render json for channel %s: %w", t.ChannelID, err)
	}
	return buf.Bytes(), nil
}

// appendJSONPlain renders the json format without reflection (the socket
// renders a token per request) when no string needs escaping, which is
// always so for real channels; ok is false otherwise, and encoding/json
// does it. The bytes are the same either way.
func appendJSONPlain(t Token) (b []byte, ok bool) {
	for _, s := range [...]string{t.ChannelID, t.Name, t.AccessToken, t.TokenType, t.KeyID} {
		if !jsonPlain(s) {
			return nil, false
		}
	}
	b = make([]byte, 0, 160+len(t.ChannelID)+len(t.Name)+len(t.AccessToken)+len(t.TokenType)+len(t.KeyID))
	b = append(b, `{"channel_id":"`...)
	b = append(b, t.ChannelID...)
	b = append(b, `","name":"`...)
	b = append(b, t.Name...)
	b = append(b, `","access_token":"`...)
	b = append(b, t.AccessToken...)
	b = append(b, `","token_type":"`...)
	b = append(b, t.TokenType...)
	b = append(b, `","key_id":"`...)
	b = append(b, t.KeyID...)
	b = append(b, `","issued_at":"`...)
	b = t.IssuedAt.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","expires_at":"`...)
	b = t.ExpiresAt.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, "\"}\n"...)
	return b, true
}

// jsonPlain reports whether encoding/json writes s between quotes as is:
// printable ASCII other than '"' and '\\'.
func jsonPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// jsonToken fixes the json format's keys and their order.
type jsonToken struct {
	ChannelID   string `json:"channel_id"`
	Name        string `json:"name"`
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	KeyID       string `json:"key_id"`
	IssuedAt    string `json:"issued_at"`
	ExpiresAt   string `json:"expires_at"`
}

// checkToken refuses tokens the formats cannot carry. Its errors describe
// the problem, never the token.
func checkToken(format, tok string) error {
	if tok == "" {
		return errors.New("empty access token")
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c <= ' ' || c >= 0x7f {
			return errors.New("access token contains a newline, NUL, space, control or non-ASCII byte")
		}
		if format == FormatEnv && !envSafe(c) {
			return errors.New("access token contains a character the env format cannot carry unquoted")
		}
	}
	return nil
}

// envSafe reports whether c needs no quoting in a dotenv file or a shell
// assignment: the characters of base64, base64url and JWTs.
func envSafe(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '+', '/', '=':
		return true
	}
	return false
}

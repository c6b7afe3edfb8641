package output

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func sampleToken() Token {
	jst := time.FixedZone("JST", 9*3600)
	return Token{
		ChannelID:   "1657000000",
		Name:        "shop-bot & <friends>",
		AccessToken: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl-_+/=",
		TokenType:   "Bearer",
		KeyID:       "536e453c-aa93-4449-8e90-add2608783c6",
		IssuedAt:    time.Date(2025, 3, 4, 14, 5, 6, 999999999, jst),
		ExpiresAt:   time.Date(2025, 4, 3, 14, 5, 6, 0, jst),
	}
}

func TestRenderGolden(t *testing.T) {
	stateless := sampleToken()
	stateless.Name, stateless.KeyID = "", ""
	tests := []struct {
		golden, format string
		tok            Token
	}{
		{"raw.golden", FormatRaw, sampleToken()},
		{"json.golden", FormatJSON, sampleToken()},
		{"json-no-name-no-kid.golden", FormatJSON, stateless},
		{"env.golden", FormatEnv, sampleToken()},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got, err := Render(tt.format, tt.tok)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("Render(%s):\n got %q\nwant %q", tt.format, got, want)
			}
		})
	}
}

func TestRenderJSONKeys(t *testing.T) {
	out, err := Render(FormatJSON, sampleToken())
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %v", tok, err)
	}
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var v string
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("value of %v is not a string: %v", k, err)
		}
		if strings.HasSuffix(k.(string), "_at") {
			if _, err := time.Parse(time.RFC3339, v); err != nil || !strings.HasSuffix(v, "Z") {
				t.Errorf("%s = %q: not RFC 3339 UTC", k, v)
			}
		}
	}
	want := "channel_id name access_token token_type key_id issued_at expires_at"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("keys %q; want %q", got, want)
	}
}

func TestRenderErrors(t *testing.T) {
	tok := func(s string) Token { t := sampleToken(); t.AccessToken = s; return t }
	const bad = "access token contains a newline, NUL, space, control or non-ASCII byte"
	tests := []struct {
		name, format string
		tok          Token
		want         string
	}{
		{"unknown format", "yaml", sampleToken(), `output: unknown format "yaml" (want raw, json or env)`},
		{"empty format", "", sampleToken(), `output: unknown format "" (want raw, json or env)`},
		{"empty token", FormatRaw, tok(""), "output: render raw for channel 1657000000: empty access token"},
		{"newline", FormatRaw, tok("secret\nX-Injected: 1"), "output: render raw for channel 1657000000: " + bad},
		{"trailing newline", FormatJSON, tok("secret\n"), "output: render json for channel 1657000000: " + bad},
		{"nul", FormatEnv, tok("sec\x00ret"), "output: render env for channel 1657000000: " + bad},
		{"carriage return", FormatRaw, tok("secret\r"), "output: render raw for channel 1657000000: " + bad},
		{"space", FormatRaw, tok("secret token"), "output: render raw for channel 1657000000: " + bad},
		{"tab", FormatRaw, tok("secret\ttoken"), "output: render raw for channel 1657000000: " + bad},
		{"DEL", FormatRaw, tok("secret\x7f"), "output: render raw for channel 1657000000: " + bad},
		{"non-ascii", FormatJSON, tok("secrét"), "output: render json for channel 1657000000: " + bad},
		{"invalid utf-8", FormatJSON, tok("secret\xff"), "output: render json for channel 1657000000: " + bad},
		{"env dollar", FormatEnv, tok("secret$HOME"), "output: render env for channel 1657000000: access token contains a character the env format cannot carry unquoted"},
		{"env quote", FormatEnv, tok(`secret"`), "output: render env for channel 1657000000: access token contains a character the env format cannot carry unquoted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Render(tt.format, tt.tok)
			if err == nil {
				t.Fatalf("Render = %q; want error", out)
			}
			if err.Error() != tt.want {
				t.Fatalf("err = %q\nwant  %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "eyJ") {
				t.Fatalf("error leaks the token: %q", err)
			}
		})
	}
	// A token with $ is fine where it needs no quoting.
	if _, err := Render(FormatRaw, tok("abc$def")); err != nil {
		t.Fatalf("raw with $: %v", err)
	}
}

func TestTokenRedacted(t *testing.T) {
	tk := sampleToken()
	if tk.GoString() != tk.String() || strings.Contains(tk.String(), "eyJ") {
		t.Errorf("GoString %q, String %q", tk.GoString(), tk.String())
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%10.3v"} {
		for _, v := range []any{tk, &tk, []Token{tk}, struct{ T Token }{tk}} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, "eyJ") || strings.Contains(out, "65794a") {
				t.Errorf("Sprintf(%q, %T) leaks the token: %s", verb, v, out)
			}
		}
	}
}

func FuzzRender(f *testing.F) {
	f.Add("raw", "token", "name")
	f.Add("json", "eyJ.a-b_c+/=", `na"me\`)
	f.Add("env", "to\nken", "")
	f.Add("yaml", "token", "n")
	f.Fuzz(func(t *testing.T, format, token, name string) {
		tk := sampleToken()
		tk.AccessToken, tk.Name = token, name
		out, err := Render(format, tk)
		if err != nil {
			// The error must be one of the fixed messages, which are built
			// from the format and channel ID only: then it cannot carry the
			// token, whatever the token is.
			if !knownRenderError(err.Error(), format, tk.ChannelID) {
				t.Fatalf("unexpected error (could carry the token): %q", err)
			}
			return
		}
		switch format {
		case FormatRaw:
			if string(out) != token {
				t.Fatalf("raw = %q; want %q", out, token)
			}
		case FormatEnv:
			if string(out) != EnvVar+"="+token+"\n" {
				t.Fatalf("env = %q", out)
			}
		case FormatJSON:
			var got map[string]string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("json does not parse: %v: %q", err, out)
			}
			// encoding/json turns each invalid UTF-8 byte into U+FFFD.
			if got["access_token"] != token || (utf8.ValidString(name) && got["name"] != name) {
				t.Fatalf("json round trip: %q", out)
			}
		default:
			t.Fatalf("format %q accepted", format)
		}
	})
}

// knownRenderError reports whether msg is exactly one of Render's errors
// for this format and channel.
func knownRenderError(msg, format, channelID string) bool {
	if msg == fmt.Sprintf("output: unknown format %q (want raw, json or env)", format) {
		return true
	}
	for _, why := range []string{
		"empty access token",
		"access token contains a newline, NUL, space, control or non-ASCII byte",
		"access token contains a character the env format cannot carry unquoted",
	} {
		if msg == "output: render "+format+" for channel "+channelID+": "+why {
			return true
		}
	}
	return false
}

package config

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse10kChannels parses a config shaped like tokend-bench's:
// 10,000 channels in flow style, one output each. At start the config is
// read before anything else can run.
func BenchmarkParse10kChannels(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("state_dir: /var/lib/tokend\nsocket: {path: /run/tokend/s.sock}\n")
	sb.WriteString("defaults: {kind: v2.1, token_ttl: 30d, rotate_before: 10d, revoke_after: 24h, jitter: 0.1}\nchannels:\n")
	for i := range 10_000 {
		fmt.Fprintf(&sb, "  - {id: \"%d\", name: b%05d, key_id: kid, private_key_file: /k/key.jwk, channel_secret: 0123456789abcdef0123456789abcdef, outputs: [{path: /run/tokend/tokens/b%05d.token, format: raw, mode: \"0600\"}]}\n",
			1_000_000_000+i, i, i)
	}
	data := []byte(sb.String())
	env := func(string) (string, bool) { return "", false }
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := parse(data, ParseOptions{Dir: "/", LookupEnv: env})
		if err != nil {
			b.Fatal(err)
		}
		if len(cfg.Channels) != 10_000 {
			b.Fatalf("%d channels", len(cfg.Channels))
		}
	}
}

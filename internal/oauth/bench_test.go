package oauth

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkSign is one v2.1 assertion (RS256, 2048-bit key, token_exp
// set): the costliest thing tokend does per issue, and the cold start's
// baseline in tokend-bench.
func BenchmarkSign(b *testing.B) {
	s := &Signer{ChannelID: "1657000000", KeyID: "bench-kid", Key: testKeys(b).rsaA}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(now, MaxTokenTTL); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignParallel signs on every GOMAXPROCS at once, as a cold start
// of many channels does.
func BenchmarkSignParallel(b *testing.B) {
	key := testKeys(b).rsaA
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := &Signer{ChannelID: "1657000000", KeyID: "bench-kid", Key: key}
		for pb.Next() {
			if _, err := s.Sign(now, MaxTokenTTL); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLoadPrivateKey reads and parses a private JWK from a file, as
// the daemon does for every channel at start.
func BenchmarkLoadPrivateKey(b *testing.B) {
	path := filepath.Join(b.TempDir(), "key.jwk")
	if _, err := WriteNewKey(path); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadPrivateKey(path); err != nil {
			b.Fatal(err)
		}
	}
}

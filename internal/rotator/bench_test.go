package rotator

import (
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/output"
	"github.com/tokend/tokend/internal/store"
)

// noLINE is a LINE no benchmark here calls.
type noLINE struct{ LINE }

// BenchmarkTokenBodyManyChannels reads the tokens of 10,000 channels by
// name in a scattered order, as bots (and tokend-bench) do, against a plain
// map from the same names to the same bodies: the least a lookup can cost.
// With this many channels most reads find the channel's served bodies out
// of the CPU caches (read.go).
func BenchmarkTokenBodyManyChannels(b *testing.B) {
	const n = 10000
	key := sharedKey(b)
	chans := make([]Channel, n)
	for i := range chans {
		chans[i] = Channel{ID: fmt.Sprintf("16%08d", i), Name: fmt.Sprintf("bot-%05d", i), Kind: KindV21, KeyID: testKID, Key: key}
	}
	r, err := New(chans, Options{LINE: noLINE{}, Store: store.NewMemory()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, c := range r.chans {
		c.current = &store.Record{
			ChannelID: c.cfg.ID, Kind: KindV21, AccessToken: strings.Repeat("t", 170), TokenType: "Bearer",
			KeyID: "kid-" + c.cfg.ID, IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour), State: store.StateCurrent,
		}
		r.refresh(c, now)
	}
	order := mrand.New(mrand.NewPCG(1, 2)).Perm(n)
	bare := make(map[string][]byte, 2*n)
	for _, ch := range chans {
		body, found, err := r.TokenBody(ch.Name, output.FormatJSON) // renders and caches it
		if !found || body == nil || err != nil {
			b.Fatal(found, err)
		}
		bare[ch.Name], bare[ch.ID] = body, body
	}
	b.Run("tokend", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if body, _, _ := r.TokenBody(chans[order[i%n]].Name, output.FormatJSON); body == nil {
				b.Fatal("no body")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if bare[chans[order[i%n]].Name] == nil {
				b.Fatal("no body")
			}
		}
	})
}

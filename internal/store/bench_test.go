package store

import (
	"fmt"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// txid is the ID of the last committed write transaction.
func (s *Store) txid(b *testing.B) int {
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		b.Fatal(err)
	}
	return id
}

// BenchmarkPut is one durable single-record Put at a time: the latency a
// lone rotation pays (a commit with its fsyncs; a lone write does not wait
// for others to share it).
func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := fullRecord()
	start := s.txid(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.ID = fmt.Sprint(i % 100)
		if err := s.Put(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.txid(b)-start)/float64(b.N), "commits/op")
}

// BenchmarkPutParallel runs many concurrent single-record Puts: bbolt's
// Batch folds them into shared commits (commits/op well below 1).
func BenchmarkPutParallel(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	start := s.txid(b)
	b.ReportAllocs()
	b.SetParallelism(32) // goroutines per GOMAXPROCS, like many channels rotating at once
	b.RunParallel(func(pb *testing.PB) {
		r := fullRecord()
		for pb.Next() {
			i := n.Add(1)
			r.ChannelID = fmt.Sprint(i % 64)
			r.ID = fmt.Sprint(i % 1000)
			if err := s.Put(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(s.txid(b)-start)/float64(b.N), "commits/op")
}

package stripe

import (
	"sync/atomic"
	"testing"
)

// BenchmarkInc is what counting costs a caller: an Inc against a plain
// atomic add, in the same run, from one goroutine and from parallel ones.
//
//	go test ./internal/stripe -run '^$' -bench . -cpu 1,2
func BenchmarkInc(b *testing.B) {
	c := New(8)
	var plain atomic.Uint64
	b.Run("stripe", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Inc()
			}
		})
	})
	b.Run("atomic", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				plain.Add(1)
			}
		})
	})
	if c.Load() == 0 || plain.Load() == 0 {
		b.Fatal("nothing counted")
	}
}

// Every Inc is counted, from parallel goroutines.
func TestCounts(t *testing.T) {
	c := New(8)
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				c.Inc()
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if n := c.Load(); n != 4000 {
		t.Fatalf("counted %d of 4000", n)
	}
}

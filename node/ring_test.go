package node

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"cfgcluster/watch"
)

func batch(rev int64, key string, size int) watch.Batch {
	return watch.Batch{Revision: rev, Events: []watch.Event{{Key: key, New: strings.Repeat("x", size), Revision: rev}}}
}

// A stream that joins while batches flow sees every revision after the one
// it resumes from exactly once, in order: the ring and the streams are one
// sequence.
func TestRingJoinNeverSkips(t *testing.T) {
	r := newRing(1<<20, 1<<30, 0, prometheus.NewRegistry())
	const total = 20_000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for rev := int64(1); rev <= total; rev++ {
			r.add(batch(rev, "a.k", 1))
		}
	}()
	for j := 0; j < 50; j++ {
		st := &stream{prefix: "a.", ch: make(chan watch.Batch, total), resync: make(chan struct{}, 1)}
		r.mu.Lock()
		from := r.last
		r.mu.Unlock()
		missed, _, _, complete := r.join(st, from)
		if !complete {
			t.Fatalf("join at %d: incomplete", from)
		}
		next := from + 1
		for _, b := range missed {
			if b.Revision != next {
				t.Fatalf("from %d: ring gave %d, want %d", from, b.Revision, next)
			}
			next++
		}
		for next <= min(from+200, total) {
			b := <-st.ch
			if b.Revision != next {
				t.Fatalf("from %d: stream gave %d, want %d", from, b.Revision, next)
			}
			next++
		}
		r.leave(st)
	}
	wg.Wait()
}

func TestRingIsBoundedByBytesAndCount(t *testing.T) {
	r := newRing(100, 1<<20, 0, prometheus.NewRegistry())
	for rev := int64(1); rev <= 50; rev++ {
		r.add(batch(rev, "k", 100<<10)) // 100 KiB each
	}
	if r.bytes > 1<<20 || len(r.buf) > 10 || r.base != 50-int64(len(r.buf)) {
		t.Fatalf("bytes %d, %d batches, base %d", r.bytes, len(r.buf), r.base)
	}
	st := &stream{ch: make(chan watch.Batch, 1), resync: make(chan struct{}, 1)}
	missed, _, base, complete := r.join(st, 10)
	if complete || base != r.base || len(missed) != len(r.buf) || missed[0].Revision != base+1 {
		t.Fatalf("a resume from a dropped revision: complete %v, base %d, %d batches", complete, base, len(missed))
	}
	if _, last, _, complete := r.join(st, 51); complete || last != 50 {
		t.Fatalf("a resume from ahead of the ring: complete %v, last %d", complete, last)
	}
	for rev := int64(51); rev <= 300; rev++ {
		r.add(batch(rev, "k", 1))
	}
	if len(r.buf) != 100 || r.base != 200 {
		t.Fatalf("%d batches, base %d", len(r.buf), r.base)
	}
}

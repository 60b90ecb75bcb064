// Package watchtest records what a watch.Client gives a subscriber, for
// tests: every batch and resync notice, in the order they came. It is test
// support only: production code never imports it.
package watchtest

import (
	"slices"
	"sync"

	"cfgcluster/watch"
)

// Item is a batch, or (Resync non-nil) a resync notice.
type Item struct {
	Batch  watch.Batch
	Resync *watch.Resync
}

// Recorder is a watch.Handler (and BatchHandler and ResyncHandler) that
// records what it is given. It is safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	seq []Item
}

func (r *Recorder) OnPut(watch.Event)    {}
func (r *Recorder) OnUpdate(watch.Event) {}
func (r *Recorder) OnDelete(watch.Event) {}

// OnBatch records a batch.
func (r *Recorder) OnBatch(b watch.Batch) {
	r.mu.Lock()
	r.seq = append(r.seq, Item{Batch: b})
	r.mu.Unlock()
}

// OnResync records a resync notice.
func (r *Recorder) OnResync(n watch.Resync) {
	r.mu.Lock()
	r.seq = append(r.seq, Item{Resync: &n})
	r.mu.Unlock()
}

// Snapshot returns the batches and the resync notices recorded so far.
func (r *Recorder) Snapshot() ([]watch.Batch, []watch.Resync) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bs []watch.Batch
	var rs []watch.Resync
	for _, x := range r.seq {
		if x.Resync != nil {
			rs = append(rs, *x.Resync)
		} else {
			bs = append(bs, x.Batch)
		}
	}
	return bs, rs
}

// Last is the revision of the last batch recorded, 0 if none.
func (r *Recorder) Last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.seq) - 1; i >= 0; i-- {
		if r.seq[i].Resync == nil {
			return r.seq[i].Batch.Revision
		}
	}
	return 0
}

// Take removes and returns what was recorded up to the first batch after
// revision upTo; what came later stays for the next Take. A re-list's batch
// (one a resync notice of its revision follows) stands for every revision
// up to its own, so it is taken, with its notice, whatever its revision.
func (r *Recorder) Take(upTo int64) []Item {
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := len(r.seq)
	for i, x := range r.seq {
		relist := i+1 < len(r.seq) && r.seq[i+1].Resync != nil && r.seq[i+1].Resync.Revision == x.Batch.Revision
		if x.Resync == nil && x.Batch.Revision > upTo && !relist {
			cut = i
			break
		}
	}
	out := slices.Clone(r.seq[:cut])
	r.seq = slices.Clone(r.seq[cut:])
	return out
}

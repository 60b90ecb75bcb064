package watch

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// mux fans batches out to subscribers: each subscriber has a bounded queue,
// and a fixed pool of workers runs the subscribers that have work, one
// worker per subscriber at a time, so order is kept per subscriber and
// 100,000 subscribers cost no goroutine each.
type mux struct {
	log      *zap.Logger
	met      *metrics
	queueCap int
	slow     time.Duration // a call longer than this counts as a failure
	nextID   atomic.Uint64

	mu    sync.RWMutex
	exact map[string]map[uint64]*sub // by key
	pref  map[string]map[uint64]*sub // by prefix ("" for every key)
	count int

	runMu   sync.Mutex
	cond    *sync.Cond
	runq    []*chunk // subscribers with work, in chunks that workers share
	closed  bool
	wg      sync.WaitGroup
	workers sync.Map // goroutine id → struct{}: the workers, to tell a handler's own calls
}

// Breaker settings: a handler that fails (panics or takes longer than the
// slow threshold) breakerFailures times in a row is cut off for
// breakerBase, doubling each time up to breakerMax.
const (
	breakerFailures = 5
	breakerBase     = time.Second
	breakerMax      = time.Minute
	runBurst        = 16  // batches a worker delivers to one subscriber before taking the next
	dispatchChunk   = 128 // subscribers handed to the workers at a time while dispatching
)

// chunk is a list of subscribers to run. Every worker takes items from the
// head chunk with one atomic add each, so a dispatch to thousands of
// subscribers costs no lock per subscriber, and a slow subscriber holds only
// the worker running it.
type chunk struct {
	subs []*sub
	next atomic.Int64
}

type sub struct {
	id  uint64
	pat pattern
	h   Handler
	m   *mux

	// callMu is held by the worker from its check that the subscriber is
	// still registered until the handler returns, so Unsubscribe can wait
	// out a call that has begun; callingG is that worker's goroutine id.
	callMu   sync.Mutex
	callingG atomic.Uint64

	mu        sync.Mutex
	queue     []Batch // empty when idle; at most a few slots' buffer kept
	scheduled bool    // in the run queue or running
	dropped   int     // batches dropped since the last resync notice
	reason    string  // why the first of them was dropped
	removed   bool
	failures  int         // consecutive failed calls
	opens     int         // times the breaker opened
	openUntil time.Time   // breaker open until then
	wake      *time.Timer // runs the subscriber when the breaker closes, to tell it what it missed
	lastRev   int64       // revision of the newest batch enqueued or dropped
}

func newMux(log *zap.Logger, met *metrics, workers, queueCap int, slow time.Duration) *mux {
	m := &mux{log: log, met: met, queueCap: queueCap, slow: slow,
		exact: map[string]map[uint64]*sub{}, pref: map[string]map[uint64]*sub{}}
	m.cond = sync.NewCond(&m.runMu)
	for i := 0; i < workers; i++ {
		m.wg.Add(1)
		go m.worker()
	}
	return m
}

func (m *mux) add(p pattern, h Handler) *sub {
	s := &sub{id: m.nextID.Add(1), pat: p, h: h, m: m}
	idx := m.pref
	if p.exact {
		idx = m.exact
	}
	m.mu.Lock()
	if idx[p.prefix] == nil {
		idx[p.prefix] = map[uint64]*sub{}
	}
	idx[p.prefix][s.id] = s
	m.count++
	m.mu.Unlock()
	return s
}

func (m *mux) remove(s *sub) bool {
	idx := m.pref
	if s.pat.exact {
		idx = m.exact
	}
	m.mu.Lock()
	_, ok := idx[s.pat.prefix][s.id]
	if ok {
		delete(idx[s.pat.prefix], s.id)
		if len(idx[s.pat.prefix]) == 0 {
			delete(idx, s.pat.prefix)
		}
		m.count--
	}
	m.mu.Unlock()
	s.mu.Lock()
	s.removed = true
	m.met.queued.Add(-int64(len(s.queue)))
	s.queue = nil
	if s.wake != nil {
		s.wake.Stop()
		s.wake = nil
	}
	s.mu.Unlock()
	// A call that began before removed was set finishes before remove
	// returns, so no call starts after it; unless the caller is that call
	// (a handler unsubscribing itself), which must not wait for itself.
	if g := s.callingG.Load(); g == 0 || g != goid() {
		s.callMu.Lock()
		s.callMu.Unlock() //nolint:staticcheck // an empty critical section: waiting out the call
	}
	return ok
}

// subscribers returns the patterns of the subscribers whose pattern matches key.
func (m *mux) subscribers(key string) []string {
	var out []string
	m.mu.RLock()
	defer m.mu.RUnlock()
	for range m.exact[key] {
		out = append(out, key)
	}
	for p, subs := range m.pref {
		if (pattern{prefix: p}).matches(key) {
			for range subs {
				out = append(out, p+"*")
			}
		}
	}
	return out
}

// dispatch enqueues a revision's batch for every matching subscriber. It
// never blocks on a subscriber.
func (m *mux) dispatch(b Batch) {
	var run []*sub
	m.mu.RLock()
	if len(b.Events) == 1 {
		// The common case: every match gets the batch as it is, shared.
		// Workers start on each chunk while the rest is enqueued.
		key := b.Events[0].Key
		for _, s := range m.exact[key] {
			if run = s.enqueue(b, run); len(run) == dispatchChunk {
				m.schedule(run...)
				run = nil
			}
		}
		for p, subs := range m.pref {
			if (pattern{prefix: p}).matches(key) {
				for _, s := range subs {
					if run = s.enqueue(b, run); len(run) == dispatchChunk {
						m.schedule(run...)
						run = nil
					}
				}
			}
		}
	} else {
		per := map[*sub][]Event{}
		var order []*sub
		for _, e := range b.Events {
			add := func(s *sub) {
				if _, ok := per[s]; !ok {
					order = append(order, s)
				}
				per[s] = append(per[s], e)
			}
			for _, s := range m.exact[e.Key] {
				add(s)
			}
			for p, subs := range m.pref {
				if (pattern{prefix: p}).matches(e.Key) {
					for _, s := range subs {
						add(s)
					}
				}
			}
		}
		for _, s := range order {
			run = s.enqueue(Batch{Revision: b.Revision, Events: per[s]}, run)
		}
	}
	m.mu.RUnlock()
	m.schedule(run...)
}

// resyncAll tells every subscriber to re-read (after a re-list).
func (m *mux) resyncAll(rev int64) {
	var run []*sub
	m.mu.RLock()
	for _, idx := range []map[string]map[uint64]*sub{m.exact, m.pref} {
		for _, subs := range idx {
			for _, s := range subs {
				s.mu.Lock()
				if !s.removed {
					if s.dropped == 0 {
						s.reason = "relist"
					}
					s.dropped++
					s.lastRev = rev
					if !s.scheduled {
						s.scheduled = true
						run = append(run, s)
					}
				}
				s.mu.Unlock()
			}
		}
	}
	m.mu.RUnlock()
	m.schedule(run...)
}

// enqueue adds b to the subscriber's queue, or counts it dropped when the
// queue is full or the breaker open. It appends s to run if s needs a worker.
func (s *sub) enqueue(b Batch, run []*sub) []*sub {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return run
	}
	s.lastRev = b.Revision
	switch {
	case !s.openUntil.IsZero() && time.Now().Before(s.openUntil):
		s.drop("circuit-open")
	case len(s.queue) >= s.m.queueCap:
		s.drop("overflow")
	default:
		s.openUntil = time.Time{}
		s.queue = append(s.queue, b)
		s.m.met.queued.Add(1)
	}
	if !s.scheduled && (len(s.queue) > 0 || s.dropped > 0) {
		s.scheduled = true
		run = append(run, s)
	}
	return run
}

func (s *sub) drop(reason string) {
	if s.dropped == 0 {
		s.reason = reason
	}
	s.dropped++
	s.m.met.drops.WithLabelValues(reason).Inc()
}

func (m *mux) schedule(subs ...*sub) {
	if len(subs) == 0 {
		return
	}
	m.runMu.Lock()
	m.runq = append(m.runq, &chunk{subs: subs})
	m.runMu.Unlock()
	if len(subs) == 1 {
		m.cond.Signal()
	} else {
		m.cond.Broadcast()
	}
}

func (m *mux) worker() {
	defer m.wg.Done()
	g := goid()
	m.workers.Store(g, struct{}{})
	defer m.workers.Delete(g)
	for {
		m.runMu.Lock()
		for len(m.runq) == 0 && !m.closed {
			m.cond.Wait()
		}
		if m.closed {
			m.runMu.Unlock()
			return
		}
		ch := m.runq[0]
		m.runMu.Unlock()
		for {
			i := ch.next.Add(1) - 1
			if i >= int64(len(ch.subs)) {
				break
			}
			if s := ch.subs[i]; s.run(g) {
				m.schedule(s) // more work: back of the line, for fairness
			}
		}
		m.runMu.Lock()
		if len(m.runq) > 0 && m.runq[0] == ch {
			m.runq[0] = nil
			m.runq = m.runq[1:]
		}
		m.runMu.Unlock()
	}
}

// run delivers up to runBurst batches, then any pending resync notice. It
// reports whether work remains. It takes the subscriber's lock once per
// call: to record the last call's outcome and take the next batch. g is
// the worker's goroutine id.
func (s *sub) run(g uint64) bool {
	var (
		called, failed bool
		b              Batch
		notice         *Resync
	)
	for i := 0; ; i++ {
		s.callMu.Lock()
		s.mu.Lock()
		if called {
			s.record(failed)
		}
		if s.removed {
			s.scheduled = false
			s.mu.Unlock()
			s.callMu.Unlock()
			return false
		}
		if i == runBurst {
			more := len(s.queue) > 0 || s.dropped > 0
			if !more {
				s.scheduled = false
			}
			s.mu.Unlock()
			s.callMu.Unlock()
			return more
		}
		b, notice = Batch{}, nil
		switch {
		case len(s.queue) > 0:
			b = s.queue[0]
			s.queue[0] = Batch{}
			if len(s.queue) == 1 && cap(s.queue) <= 4 {
				s.queue = s.queue[:0] // keep a small buffer: no allocation per event
			} else if s.queue = s.queue[1:]; len(s.queue) == 0 {
				s.queue = nil // a burst's buffer is not kept
			}
			s.m.met.queued.Add(-1)
		case s.dropped > 0 && !time.Now().Before(s.openUntil):
			notice = &Resync{Reason: s.reason, Dropped: s.dropped, Revision: s.lastRev}
			s.dropped = 0
		default:
			s.scheduled = false
			if s.dropped > 0 && s.wake == nil {
				// The breaker is open: tell the handler what it missed
				// when it closes, even if no batch comes to wake it.
				s.wake = time.AfterFunc(time.Until(s.openUntil), s.wakeUp)
			}
			s.mu.Unlock()
			s.callMu.Unlock()
			return false
		}
		s.mu.Unlock()
		s.callingG.Store(g)
		failed, called = s.call(b, notice), true
		s.callingG.Store(0)
		s.callMu.Unlock()
	}
}

// wakeUp schedules the subscriber when its breaker closes.
func (s *sub) wakeUp() {
	s.mu.Lock()
	s.wake = nil
	run := !s.removed && !s.scheduled && s.dropped > 0
	if run {
		s.scheduled = true
	}
	s.mu.Unlock()
	if run {
		s.m.schedule(s)
	}
}

// call runs the handler once, recovering a panic. It reports whether the
// call failed: panicked, or took longer than the slow threshold.
func (s *sub) call(b Batch, notice *Resync) (failed bool) {
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != nil {
				failed = true
				s.m.met.panics.Inc()
				s.m.log.Error("subscriber panicked", zap.String("pattern", s.pat.String()),
					zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			}
		}()
		if notice != nil {
			s.m.met.resyncs.WithLabelValues(notice.Reason).Inc()
			s.m.log.Warn("subscriber resync", zap.String("pattern", s.pat.String()),
				zap.String("reason", notice.Reason), zap.Int("dropped", notice.Dropped))
			if rh, ok := s.h.(ResyncHandler); ok {
				rh.OnResync(*notice)
			}
			return
		}
		deliver(s.h, b)
	}()
	if d := time.Since(start); d > s.m.slow {
		failed = true
		s.m.met.slow.Inc()
		s.m.log.Warn("slow subscriber", zap.String("pattern", s.pat.String()), zap.Duration("took", d))
	}
	return failed
}

// record feeds a call's outcome to the circuit breaker. s.mu is held.
func (s *sub) record(failed bool) {
	if !failed {
		s.failures = 0
		return
	}
	s.failures++
	if s.failures < breakerFailures {
		return
	}
	// Open the breaker: drop what is queued, tell the handler later.
	wait := min(breakerBase<<min(s.opens, 6), breakerMax)
	s.opens++
	s.failures = breakerFailures - 1 // half-open after the wait: one more failure reopens
	s.openUntil = time.Now().Add(wait)
	s.m.met.breakerOpens.Inc()
	for range s.queue {
		s.drop("circuit-open")
	}
	s.m.met.queued.Add(-int64(len(s.queue)))
	s.queue = nil
	s.m.log.Error("subscriber circuit open", zap.String("pattern", s.pat.String()), zap.Duration("for", wait),
		zap.String("why", fmt.Sprintf("%d failed calls in a row", breakerFailures)))
}

// idle reports whether the subscriber has nothing queued or running.
func (s *sub) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.scheduled && len(s.queue) == 0
}

// close stops the workers: each finishes the call it is in. It waits for
// them, unless it is called from a handler (a worker), which cannot wait
// for itself: then the workers stop as soon as their calls return.
func (m *mux) close() {
	m.runMu.Lock()
	m.closed = true
	m.runq = nil
	m.runMu.Unlock()
	m.cond.Broadcast()
	m.mu.RLock()
	for _, idx := range []map[string]map[uint64]*sub{m.exact, m.pref} {
		for _, subs := range idx {
			for _, s := range subs {
				s.mu.Lock()
				if s.wake != nil {
					s.wake.Stop()
					s.wake = nil
				}
				s.mu.Unlock()
			}
		}
	}
	m.mu.RUnlock()
	if !m.inWorker() {
		m.wg.Wait()
	}
}

// inWorker reports whether the caller is one of the workers (a handler).
func (m *mux) inWorker() bool {
	_, ok := m.workers.Load(goid())
	return ok
}

// goid is the calling goroutine's id, from its stack header ("goroutine 42
// [running]:"). Only Close and Unsubscribe ask, to tell a handler's own
// call; the delivery path never does.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

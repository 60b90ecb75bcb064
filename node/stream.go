package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/watch"
)

// ring keeps the node's most recent batches, so an SSE stream can resume
// after Last-Event-ID. It is a subscriber of the node's watch client.
type ring struct {
	mu    sync.Mutex
	buf   []watch.Batch
	size  int
	start int   // index of the oldest batch in buf
	base  int64 // every batch after this revision is in buf
}

func newRing(size int, base int64) *ring { return &ring{size: size, base: base} }

// handler subscribes the ring to every batch and resync notice.
func (r *ring) handler() watch.Handler {
	return watch.HandlerFuncs{BatchFunc: r.add, ResyncFunc: r.reset}
}

func (r *ring) add(b watch.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) < r.size {
		r.buf = append(r.buf, b)
		return
	}
	r.base = r.buf[r.start].Revision
	r.buf[r.start] = b
	r.start = (r.start + 1) % r.size
}

// reset: the ring itself fell behind; it cannot vouch for what it lost.
func (r *ring) reset(n watch.Resync) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf, r.start, r.base = nil, 0, n.Revision
}

// since returns the batches after rev, and false if some are no longer kept.
func (r *ring) since(rev int64) ([]watch.Batch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev < r.base {
		return nil, false
	}
	var out []watch.Batch
	for i := 0; i < len(r.buf); i++ {
		b := r.buf[(r.start+i)%len(r.buf)]
		if b.Revision > rev {
			out = append(out, b)
		}
	}
	return out, true
}

// stream is one SSE client's subscription: a bounded buffer between the
// watch workers (never blocked) and the HTTP handler goroutine.
type stream struct {
	ch     chan watch.Batch
	resync chan struct{}
}

func (s *stream) handler() watch.Handler {
	return watch.HandlerFuncs{BatchFunc: s.add, ResyncFunc: func(watch.Resync) { s.lost() }}
}

// add never blocks the watch workers: a full buffer becomes a resync.
func (s *stream) add(b watch.Batch) {
	select {
	case s.ch <- b:
	default:
		s.lost()
	}
}

func (s *stream) lost() {
	select {
	case s.resync <- struct{}{}:
	default:
	}
}

// keepalive is how often an idle stream sends a comment line, so proxies
// keep it open.
const keepalive = 15 * time.Second

// watchStream serves GET /v1/watch?prefix=P: one Server-Sent Event per
// revision that changed a key under P, with the revision as its id.
func (n *Node) watchStream(w http.ResponseWriter, r *http.Request) error {
	flusher, ok := w.(http.Flusher)
	if !ok {
		return cfgerr.Errorf(cfgerr.Internal, "", "", "streaming is not supported by this connection")
	}
	prefix := r.URL.Query().Get("prefix")
	var since int64
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		v, err := strconv.ParseInt(id, 10, 64)
		if err != nil || v < 0 {
			return cfgerr.Errorf(cfgerr.Invalid, "", "Last-Event-ID", "%q is not a revision", id)
		}
		since = v
	}
	st := &stream{ch: make(chan watch.Batch, 256), resync: make(chan struct{}, 1)}
	sub := n.watch.Subscribe(prefix+"*", st.handler())
	defer n.watch.Unsubscribe(sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	last := n.watch.Revision()
	if since > 0 {
		missed, complete := n.ring.since(since)
		if !complete {
			if err := sendResync(w, last, "history"); err != nil {
				return nil
			}
		} else {
			last = since
			for _, b := range missed {
				if err := n.sendBatch(w, b, prefix); err != nil {
					return nil
				}
				last = b.Revision
			}
		}
	}
	flusher.Flush()
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return nil
		case <-n.done:
			return nil
		case <-tick.C:
			_, err = fmt.Fprint(w, ": keepalive\n\n")
		case <-st.resync:
			last = n.watch.Revision()
			err = sendResync(w, last, "overflow")
		case b := <-st.ch:
			if b.Revision <= last {
				continue // already sent from the ring
			}
			err = n.sendBatch(w, b, prefix)
			last = b.Revision
		}
		if err != nil {
			return nil // the client went away
		}
		flusher.Flush()
	}
}

func sendResync(w http.ResponseWriter, rev int64, reason string) error {
	data, _ := json.Marshal(api.WatchResync{Revision: rev, Reason: reason})
	_, err := fmt.Fprintf(w, "id: %d\nevent: resync\ndata: %s\n\n", rev, data)
	return err
}

func (n *Node) sendBatch(w http.ResponseWriter, b watch.Batch, prefix string) error {
	data := n.encoded.get(b, prefix, n.encodeBatch)
	if data == nil {
		return nil
	}
	_, err := w.Write(data)
	return err
}

// encodeBatch renders a batch as one SSE "change" event: the events under
// prefix, sensitive values redacted; nil if none is under it.
func (n *Node) encodeBatch(b watch.Batch, prefix string) []byte {
	sch := n.watch.Schema()
	out := api.WatchBatch{Revision: b.Revision}
	for _, e := range b.Events {
		if !strings.HasPrefix(e.Key, prefix) {
			continue // ring batches hold every key
		}
		we := api.WatchEvent{Kind: string(e.Kind), Key: e.Key, Old: wireAny(sch, e.Key, e.Old), New: wireAny(sch, e.Key, e.New),
			Actor: e.Actor, RequiresRestart: e.RequiresRestart}
		if !e.Time.IsZero() {
			t := e.Time
			we.Time = &t
		}
		out.Events = append(out.Events, we)
	}
	if len(out.Events) == 0 {
		return nil
	}
	data, _ := json.Marshal(out)
	return fmt.Appendf(nil, "id: %d\nevent: change\ndata: %s\n\n", b.Revision, data)
}

// encodedCache keeps the last batches' SSE encodings by revision and
// prefix: thousands of streams of one prefix share one encoding.
type encodedCache struct {
	mu    sync.Mutex
	m     map[encodedKey][]byte
	order []encodedKey
}

type encodedKey struct {
	rev    int64
	prefix string
}

const encodedKeep = 256

func (c *encodedCache) get(b watch.Batch, prefix string, encodeFn func(watch.Batch, string) []byte) []byte {
	k := encodedKey{b.Revision, prefix}
	c.mu.Lock()
	data, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return data
	}
	data = encodeFn(b, prefix)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[encodedKey][]byte{}
	}
	if _, ok := c.m[k]; !ok {
		c.m[k] = data
		c.order = append(c.order, k)
		if len(c.order) > encodedKeep {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
	}
	return data
}

package node

import (
	"cfgcluster/auth"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/watch"
)

// ring keeps the node's most recent batches, so an SSE stream can resume
// after Last-Event-ID, and hands every batch to the open streams. It is the
// one subscriber of the node's watch client that SSE uses: the ring and the
// streams see one ordered sequence, and a stream that joins takes the
// batches it missed and its place in that sequence under one lock, so no
// batch falls between the two.
type ring struct {
	mu       sync.Mutex
	buf      []ringBatch // oldest first
	maxCount int
	maxBytes int
	bytes    int
	base     int64 // every batch after this revision is in buf
	last     int64 // the newest revision the ring has seen
	streams  map[*stream]struct{}
	gauge    prometheus.Gauge
}

// The ring keeps at most ringBatches batches and about ringBytes of keys and
// values: a stream that resumes from further back gets a resync.
const (
	ringBatches = 4096
	ringBytes   = 32 << 20
)

type ringBatch struct {
	watch.Batch
	size int // approximate bytes held
}

func newRing(maxCount, maxBytes int, base int64, reg prometheus.Registerer) *ring {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cfgcluster_sse_streams", Help: "Open SSE watch streams."})
	reg.MustRegister(g)
	return &ring{maxCount: maxCount, maxBytes: maxBytes, base: base, last: base, streams: map[*stream]struct{}{}, gauge: g}
}

// handler subscribes the ring to every batch and resync notice.
func (r *ring) handler() watch.Handler {
	return watch.HandlerFuncs{BatchFunc: r.add, ResyncFunc: r.reset}
}

func (r *ring) add(b watch.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rb := ringBatch{Batch: b, size: batchSize(b)}
	r.buf = append(r.buf, rb)
	r.bytes += rb.size
	for len(r.buf) > 1 && (len(r.buf) > r.maxCount || r.bytes > r.maxBytes) {
		r.base = r.buf[0].Revision
		r.bytes -= r.buf[0].size
		r.buf[0] = ringBatch{}
		r.buf = r.buf[1:]
	}
	r.last = b.Revision
	for st := range r.streams {
		if st.wants(b) {
			st.add(b)
		}
	}
}

// reset: the ring itself fell behind; it cannot vouch for what it lost,
// and neither can the streams it feeds.
func (r *ring) reset(n watch.Resync) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf, r.bytes, r.base, r.last = nil, 0, n.Revision, n.Revision
	for st := range r.streams {
		st.lost()
	}
}

// join registers a stream and returns, atomically with it, the batches
// after rev (after base, when rev is older than the ring keeps), the ring's
// newest revision and its base, and whether the batches since rev are all
// kept (false: rev is older than base, or ahead of the ring).
func (r *ring) join(st *stream, rev int64) (missed []watch.Batch, last, base int64, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.streams[st] = struct{}{}
	r.gauge.Inc()
	if rev > r.last {
		return nil, r.last, r.base, false
	}
	for _, b := range r.buf {
		if b.Revision > max(rev, r.base) && st.wants(b.Batch) {
			missed = append(missed, b.Batch)
		}
	}
	return missed, r.last, r.base, rev >= r.base
}

func (r *ring) leave(st *stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.streams[st]; ok {
		delete(r.streams, st)
		r.gauge.Dec()
	}
}

// batchSize approximates the bytes a batch holds: keys and values.
func batchSize(b watch.Batch) int {
	n := 64
	for _, e := range b.Events {
		n += 64 + len(e.Key) + len(e.Actor) + valueSize(e.Old) + valueSize(e.New)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []string:
		n := 0
		for _, s := range x {
			n += len(s) + 16
		}
		return n
	case map[string]any:
		n := 0
		for k, e := range x {
			n += len(k) + 16 + valueSize(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += 16 + valueSize(e)
		}
		return n
	}
	return 16
}

// stream is one SSE client's subscription: a bounded buffer between the
// ring (never blocked) and the HTTP handler goroutine.
type stream struct {
	prefix string
	ch     chan watch.Batch
	resync chan struct{}
	// With ?proposals=true: proposals made or decided that the caller may
	// read and that touch a key under prefix, and a notice when some were
	// lost (re-list them).
	props     chan *kv.Proposal
	propsLost chan struct{}
	may       func(key string) bool
}

// mayProposal reports whether the stream's caller may see p: a key of it
// under the stream's prefix, and read on every key (proposalKeys).
func (s *stream) mayProposal(p *kv.Proposal) bool {
	under := false
	for _, k := range proposalKeys(p) {
		if !s.may(k) {
			return false
		}
		under = under || strings.HasPrefix(k, s.prefix)
	}
	return under
}

// wants reports whether the batch changes a key under the stream's prefix.
func (s *stream) wants(b watch.Batch) bool {
	for _, e := range b.Events {
		if strings.HasPrefix(e.Key, s.prefix) {
			return true
		}
	}
	return false
}

// add never blocks the ring: a full buffer becomes a resync.
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
	prefix := r.URL.Query().Get("prefix")
	if !mayRead(r, prefix) {
		// A stream is shared by every key under its prefix: the caller
		// must be able to read them all.
		return auth.Forbidden(principal(r), auth.Read, fmt.Sprintf("every key under %q: watch a prefix you may read", prefix))
	}
	var since int64
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		v, err := strconv.ParseInt(id, 10, 64)
		if err != nil || v < 0 {
			return cfgerr.Errorf(cfgerr.Invalid, "", "Last-Event-ID", "%q is not a revision", id)
		}
		since = v
	}
	ew, release, err := n.openStream(w, r)
	if err != nil {
		return err
	}
	defer release()
	st := &stream{prefix: prefix, ch: make(chan watch.Batch, 256), resync: make(chan struct{}, 1)}
	if r.URL.Query().Get("proposals") == "true" {
		who := principal(r)
		st.props, st.propsLost = make(chan *kv.Proposal, 64), make(chan struct{}, 1)
		st.may = func(key string) bool { return who.Can(auth.Read, key) }
		n.proposals.join(st)
		defer n.proposals.leave(st)
	}
	missed, last, base, complete := n.ring.join(st, since)
	defer n.ring.leave(st)
	var older []watch.Batch
	if since > 0 && since < base {
		// Older than this node's ring (it started after since, or the
		// stream comes from another node): etcd's history has the rest,
		// unless compacted.
		var err error
		if older, err = n.replay(r.Context(), since, base); err == nil {
			complete = true
		} else {
			n.log.Debug("cannot replay a stream's missed changes from etcd", zap.Int64("since", since), zap.Error(err))
		}
	}

	startEvents(w)
	if since > 0 {
		if !complete {
			reason := "history" // older than the node keeps
			if since > last {
				reason = "ahead" // a revision this node has not seen: another cluster, or a restore
			}
			if err := sendResync(ew, last, reason); err != nil {
				return nil
			}
		} else {
			for _, b := range append(older, missed...) {
				if err := n.sendBatch(ew, b, prefix); err != nil {
					return nil
				}
			}
		}
	}
	if ew.flush() != nil {
		return nil
	}
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
			_, err = fmt.Fprint(ew, ": keepalive\n\n")
		case <-st.resync:
			err = sendResync(ew, n.watch.Revision(), "overflow")
		case b := <-st.ch:
			err = n.sendBatch(ew, b, prefix)
		case p := <-st.props:
			data, _ := json.Marshal(n.wireProposal(p))
			_, err = fmt.Fprintf(ew, "event: proposal\ndata: %s\n\n", data)
		case <-st.propsLost:
			_, err = fmt.Fprint(ew, "event: proposals-resync\ndata: {}\n\n")
		}
		if err == nil {
			err = ew.flush()
		}
		if err != nil {
			return nil // the client went away, or stopped reading
		}
	}
}

// openStream counts a client's Server-Sent Events stream against its limit
// (release gives the place back) and returns its writer: a stream lives as
// long as its client reads, so no read deadline, and a write deadline per
// event instead.
func (n *Node) openStream(w http.ResponseWriter, r *http.Request) (ew *deadlineWriter, release func(), err error) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !n.streams.acquire(host, n.cfg.MaxStreamsPerClient) {
		return nil, nil, cfgerr.Errorf(cfgerr.TooMany, "", "streams", "%s has %d streams open, the most one client may", host, n.cfg.MaxStreamsPerClient)
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	return &deadlineWriter{w: w, rc: rc, d: n.cfg.EventWriteTimeout}, func() { n.streams.release(host) }, nil
}

// startEvents writes the headers of a Server-Sent Events answer.
func startEvents(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// deadlineWriter gives every write (and flush) of a long answer its own
// deadline: a client that stops reading is dropped after d, whatever the
// answer's length.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (dw *deadlineWriter) Write(p []byte) (int, error) {
	dw.rc.SetWriteDeadline(time.Now().Add(dw.d))
	return dw.w.Write(p)
}

func (dw *deadlineWriter) flush() error {
	dw.rc.SetWriteDeadline(time.Now().Add(dw.d))
	return dw.rc.Flush()
}

// perClient counts open streams by client address.
type perClient struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *perClient) acquire(host string, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	if p.n[host] >= limit {
		return false
	}
	p.n[host]++
	return true
}

func (p *perClient) release(host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[host]--; p.n[host] <= 0 {
		delete(p.n, host)
	}
}

func sendResync(w io.Writer, rev int64, reason string) error {
	data, _ := json.Marshal(api.WatchResync{Revision: rev, Reason: reason})
	_, err := fmt.Fprintf(w, "id: %d\nevent: resync\ndata: %s\n\n", rev, data)
	return err
}

func (n *Node) sendBatch(w io.Writer, b watch.Batch, prefix string) error {
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
			Actor: e.Actor, Comment: e.Comment, RequiresRestart: e.RequiresRestart}
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

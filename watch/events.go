package watch

import (
	"strings"
	"time"
)

// Kind says what happened to a key.
type Kind string

const (
	Put    Kind = "put"    // the key got a value where it had none
	Update Kind = "update" // the key's value changed
	Delete Kind = "delete" // the key's value was removed: it falls back to its default
)

// Event is one key's change: the seed design's ConfigurationChangeEvent.
// Old and New are typed values (see package schema) shared with the cache:
// treat them as read-only. Old is the default (or nil) when the key had no
// value; New is the default (or nil) when the key was deleted.
type Event struct {
	Kind     Kind
	Key      string
	Old      any
	New      any
	Source   Source    // where New comes from: cluster, or default after a delete
	Time     time.Time // when the change was committed (the writer's clock)
	Actor    string
	Comment  string // why, as the change said
	Revision int64  // the etcd revision of the change
	// RequiresRestart marks a key the service applies only at restart: the
	// cache keeps the value it started with, New is pending (the seed
	// design's RestartRequiredEvent). See Client.PendingRestart.
	RequiresRestart bool
	// Err is set when New cannot be read: the value is sealed with a data
	// key the client does not hold (a cfgerr Sealed error). Lookup answers
	// the same error; the default is never served in its place.
	Err error
}

// Batch is every event of one etcd revision (one transaction) that a
// subscriber's pattern matches. A batch is never split.
type Batch struct {
	Revision int64
	Events   []Event
}

// Resync tells a subscriber that it missed events, and why: its view may be
// stale and it should re-read what it needs (the seed design's
// ConfigurationInvalidateEvent). Resyncs are counted in the metrics.
type Resync struct {
	Reason  string // "overflow", "circuit-open", "relist"
	Dropped int    // batches this subscriber did not get
	// Revision is the client's revision when the notice was sent: reads
	// from the client now reflect at least it.
	Revision int64
}

// Handler reacts to changes. Each handler's calls are made one at a time, in
// revision order, from a shared pool of workers: never two at once for one
// handler. A handler should return quickly; one that is slow or panics is
// isolated by a circuit breaker (see package doc) and never delays the cache
// or other handlers.
type Handler interface {
	OnPut(Event)
	OnUpdate(Event)
	OnDelete(Event)
}

// BatchHandler is implemented by handlers that want each revision whole in
// one call; OnPut, OnUpdate and OnDelete are then not called.
type BatchHandler interface {
	OnBatch(Batch)
}

// ResyncHandler is implemented by handlers that want to be told of missed
// events. Without it a resync is logged and counted only.
type ResyncHandler interface {
	OnResync(Resync)
}

// HandlerFuncs adapts functions to a Handler; nil functions are skipped.
// With BatchFunc set, it receives whole batches and the others are unused.
type HandlerFuncs struct {
	PutFunc    func(Event)
	UpdateFunc func(Event)
	DeleteFunc func(Event)
	BatchFunc  func(Batch)
	ResyncFunc func(Resync)
}

func (f HandlerFuncs) OnPut(e Event) {
	if f.PutFunc != nil {
		f.PutFunc(e)
	}
}

func (f HandlerFuncs) OnUpdate(e Event) {
	if f.UpdateFunc != nil {
		f.UpdateFunc(e)
	}
}

func (f HandlerFuncs) OnDelete(e Event) {
	if f.DeleteFunc != nil {
		f.DeleteFunc(e)
	}
}

func (f HandlerFuncs) OnResync(r Resync) {
	if f.ResyncFunc != nil {
		f.ResyncFunc(r)
	}
}

// deliver calls the handler for one batch.
func deliver(h Handler, b Batch) {
	if f, ok := h.(HandlerFuncs); ok && f.BatchFunc != nil {
		f.BatchFunc(b)
		return
	}
	if bh, ok := h.(BatchHandler); ok {
		bh.OnBatch(b)
		return
	}
	for _, e := range b.Events {
		switch e.Kind {
		case Put:
			h.OnPut(e)
		case Update:
			h.OnUpdate(e)
		case Delete:
			h.OnDelete(e)
		}
	}
}

// Pattern selects keys: "*" (or "") every key, "session.*" every key that
// starts with "session.", anything else one key exactly.
type pattern struct {
	prefix string
	exact  bool
}

func parsePattern(p string) pattern {
	if p == "" || p == "*" {
		return pattern{}
	}
	if strings.HasSuffix(p, "*") {
		return pattern{prefix: strings.TrimSuffix(p, "*")}
	}
	return pattern{prefix: p, exact: true}
}

func (p pattern) String() string {
	if p.exact {
		return p.prefix
	}
	return p.prefix + "*"
}

func (p pattern) matches(key string) bool {
	if p.exact {
		return key == p.prefix
	}
	return strings.HasPrefix(key, p.prefix)
}

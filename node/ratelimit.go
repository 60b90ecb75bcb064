package node

import (
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"cfgcluster/cfgerr"
)

// limits are the request rates a node allows: per token, reads and writes
// apart, and failed authentications per source address (a brute force
// gets 429s, and the log is not flooded).
type limits struct {
	read, write, failures rate.Limit
	readBurst, writeBurst int
	failureBurst          int

	mu       sync.Mutex
	byToken  map[string]*tokenLimits
	byAddr   map[string]*rate.Limiter
	rejected *prometheus.CounterVec
}

type tokenLimits struct{ read, write *rate.Limiter }

// maxTracked bounds each map: past it, it starts afresh (a flood of
// addresses costs memory no longer than that).
const maxTracked = 100_000

func newLimits(cfg Config, reg prometheus.Registerer) *limits {
	l := &limits{read: rate.Limit(cfg.RateReads), write: rate.Limit(cfg.RateWrites), failures: rate.Limit(cfg.AuthFailureRate),
		readBurst: max(1, 2*cfg.RateReads), writeBurst: max(1, 2*cfg.RateWrites), failureBurst: 100,
		byToken: map[string]*tokenLimits{}, byAddr: map[string]*rate.Limiter{},
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cfgcluster_http_rate_limited_total",
			Help: "Requests refused with 429 by the node's rate limits, by kind: read, write, auth_failure."}, []string{"kind"})}
	if cfg.RateReads <= 0 {
		l.read = rate.Inf
	}
	if cfg.RateWrites <= 0 {
		l.write = rate.Inf
	}
	if cfg.AuthFailureRate <= 0 {
		l.failures = rate.Inf
	}
	reg.MustRegister(l.rejected)
	return l
}

func source(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failuresLeft reports whether the address may still fail to authenticate.
func (l *limits) failuresLeft(r *http.Request) error {
	l.mu.Lock()
	lim := l.byAddr[source(r)]
	l.mu.Unlock()
	if lim != nil && lim.Tokens() < 1 {
		l.rejected.WithLabelValues("auth_failure").Inc()
		return cfgerr.Errorf(cfgerr.TooMany, "", "token", "too many failed authentications from %s: wait, then send a valid token", source(r))
	}
	return nil
}

// failed counts a failed authentication against the address.
func (l *limits) failed(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := source(r)
	lim := l.byAddr[a]
	if lim == nil {
		if len(l.byAddr) >= maxTracked {
			l.byAddr = map[string]*rate.Limiter{}
		}
		lim = rate.NewLimiter(l.failures, l.failureBurst)
		l.byAddr[a] = lim
	}
	lim.Allow()
}

// allow takes one request of the token's read or write budget.
func (l *limits) allow(token string, r *http.Request) error {
	l.mu.Lock()
	tl := l.byToken[token]
	if tl == nil {
		if len(l.byToken) >= maxTracked {
			l.byToken = map[string]*tokenLimits{}
		}
		tl = &tokenLimits{read: rate.NewLimiter(l.read, l.readBurst), write: rate.NewLimiter(l.write, l.writeBurst)}
		l.byToken[token] = tl
	}
	l.mu.Unlock()
	lim, kind := tl.read, "read"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		lim, kind = tl.write, "write"
	}
	if !lim.Allow() {
		l.rejected.WithLabelValues(kind).Inc()
		return cfgerr.Errorf(cfgerr.TooMany, "", "rate", "token %s is over its %s rate (%v a second): slow down", token, kind, lim.Limit())
	}
	return nil
}

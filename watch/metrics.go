package watch

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	queued       atomic.Int64 // batches queued across subscribers
	drops        *prometheus.CounterVec
	resyncs      *prometheus.CounterVec
	panics       prometheus.Counter
	slow         prometheus.Counter
	breakerOpens prometheus.Counter
	restarts     *prometheus.CounterVec
	relists      prometheus.Counter
	rejected     prometheus.Counter
	sealed       prometheus.Counter
	propagation  prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfgcluster_watch_subscriber_drops_total", Help: "Batches a subscriber did not get (it is sent a resync notice), by reason.",
		}, []string{"reason"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfgcluster_watch_resyncs_total", Help: "Resync notices sent to subscribers, by reason.",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_watch_subscriber_panics_total", Help: "Subscriber calls that panicked (recovered).",
		}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_watch_subscriber_slow_calls_total", Help: "Subscriber calls slower than the slow threshold.",
		}),
		breakerOpens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_watch_subscriber_circuit_opens_total", Help: "Times a failing subscriber was cut off for a while.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfgcluster_watch_restarts_total", Help: "etcd watches restarted, by reason.",
		}, []string{"reason"}),
		relists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_watch_relists_total", Help: "Full re-lists (start, compaction, refresh).",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_watch_rejected_values_total", Help: "Cluster values that failed the client's schema; the last valid value was kept.",
		}),
		sealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_watch_sealed_values_total", Help: "Cluster values sealed with a data key this client does not hold: reads of them fail (WithKeyring).",
		}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cfgcluster_watch_propagation_seconds", Help: "Delay from a change's commit (writer's clock) to its being applied in this client's cache.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
}

// register registers the client's metrics, including functions over its state.
func (c *Client) register(reg prometheus.Registerer) error {
	m := c.met
	cs := []prometheus.Collector{m.drops, m.resyncs, m.panics, m.slow, m.breakerOpens, m.restarts, m.relists, m.rejected, m.sealed, m.propagation,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cfgcluster_watch_cache_hits_total", Help: "Cache reads that hit."},
			func() float64 { return float64(c.cache.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cfgcluster_watch_cache_misses_total", Help: "Cache reads that missed."},
			func() float64 { return float64(c.cache.misses.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cfgcluster_watch_cache_evictions_total", Help: "Entries the LRU evicted for room."},
			func() float64 { return float64(c.cache.evictions.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cfgcluster_watch_cache_keys", Help: "Entries in the cache."},
			func() float64 { return float64(c.cache.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cfgcluster_watch_staleness_seconds", Help: "Age of the newest revision etcd confirmed this client has seen (config staleness)."},
			func() float64 { return c.Staleness().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cfgcluster_watch_revision", Help: "The etcd revision the client has applied."},
			func() float64 { return float64(c.Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cfgcluster_watch_subscriber_queue_depth", Help: "Batches waiting in subscriber queues."},
			func() float64 { return float64(m.queued.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cfgcluster_watch_subscribers", Help: "Registered subscribers."},
			func() float64 { c.mux.mu.RLock(); defer c.mux.mu.RUnlock(); return float64(c.mux.count) }),
		flagUsage{c},
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}

// flagUsage exposes the flags' evaluations, read from their counters at
// each scrape: nothing is looked up per evaluation.
type flagUsage struct{ c *Client }

var flagEvaluationsDesc = prometheus.NewDesc("cfgcluster_flag_evaluations_total",
	"Feature flag evaluations in this process, by flag and variant served (caller-default: the caller's own default, for a disabled flag, one with no default variant, or an error).",
	[]string{"flag", "variant"}, nil)

func (u flagUsage) Describe(ch chan<- *prometheus.Desc) { ch <- flagEvaluationsDesc }

func (u flagUsage) Collect(ch chan<- prometheus.Metric) {
	for key, f := range u.c.Flags().Flags {
		for variant, n := range f.Usage() {
			if variant == "" {
				variant = "caller-default"
			}
			ch <- prometheus.MustNewConstMetric(flagEvaluationsDesc, prometheus.CounterValue, float64(n), key, variant)
		}
	}
}

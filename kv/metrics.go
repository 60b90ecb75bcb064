package kv

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts the store's writes. Register it with NewMetrics; a nil
// *Metrics counts nothing.
type Metrics struct {
	writes     *prometheus.CounterVec
	invalid    *prometheus.CounterVec
	conflicts  prometheus.Counter
	retries    prometheus.Counter
	commitSecs prometheus.Histogram
	auditReads *prometheus.CounterVec
}

func (m *Metrics) auditRead(path string) {
	if m != nil {
		m.auditReads.WithLabelValues(path).Inc()
	}
}

// NewMetrics creates the store's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfgcluster_kv_writes_total", Help: "Changes attempted, by action and outcome (ok, invalid, conflict, failed_precondition, error, dry_run; proposed: stored for approval; forced: keys that need approval changed without it).",
		}, []string{"action", "outcome"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfgcluster_kv_validation_failures_total", Help: "Changes refused by validation, by what refused them (type, rule, schema).",
		}, []string{"reason"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_kv_write_conflicts_total", Help: "Transactions that lost to a concurrent change (each is retried).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cfgcluster_kv_write_retries_exhausted_total", Help: "Changes that failed with a conflict after every retry.",
		}),
		commitSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cfgcluster_kv_write_duration_seconds", Help: "Time of a validated change, reads and retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		auditReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cfgcluster_kv_audit_reads_total", Help: "Reads of the audit trail (pages of the trail, of a key's history), by path: index (the node's index of the trail chose the keys to read) or etcd (etcd read the whole range to sort it: the index was not current).",
		}, []string{"path"}),
	}
	reg.MustRegister(m.writes, m.invalid, m.conflicts, m.retries, m.commitSecs, m.auditReads)
	return m
}

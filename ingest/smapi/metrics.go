package smapi

import (
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// serverMetrics are registered once in New; the handler only increments.
type serverMetrics struct {
	requests       [numEndpoints][numOutcomes]*metrics.Counter
	latency        [numEndpoints]*metrics.Histogram
	eventsAppended *metrics.Counter
	eventsRefused  *metrics.Counter
	// reportTxnsDropped counts batch transactions not recorded for a
	// reason filed in the report error log.
	reportTxnsDropped *metrics.Counter
}

func (m *serverMetrics) register(r *metrics.Registry, lim *limiter.Limiter) {
	for ep := endpoint(0); ep < numEndpoints; ep++ {
		for o := outcome(0); o < numOutcomes; o++ {
			m.requests[ep][o] = r.Counter("sluice_smapi_requests_total",
				"Service Management API requests by endpoint and outcome (authorized: 2xx, denied: 409, error: other).",
				"endpoint", endpointNames[ep], "outcome", outcomeNames[o])
		}
	}
	for ep := endpoint(0); ep < numEndpoints; ep++ {
		m.latency[ep] = r.Histogram("sluice_smapi_request_duration_seconds",
			"Time spent in the Service Management API handler.",
			metrics.DefaultLatencyBuckets, "endpoint", endpointNames[ep])
	}
	const evHelp = "Usage events by fate: appended (handed to the sink) or refused (the sink failed or was not accepting)."
	m.eventsAppended = r.Counter("sluice_smapi_events_total", evHelp, "result", "appended")
	m.eventsRefused = r.Counter("sluice_smapi_events_total", evHelp, "result", "refused")
	m.reportTxnsDropped = r.Counter("sluice_smapi_report_transactions_dropped_total",
		"Batch report transactions not recorded (unknown application or metric, bad usage value, timestamp outside the window) while the rest of their batch was; each is listed at GET /services/{id}/errors.xml.")

	r.GaugeFunc("sluice_limiter_apps", "Applications with live counters in the limiter.",
		func() float64 { return float64(lim.Stats().Apps) })
	r.GaugeFunc("sluice_limiter_shards", "Limiter shards.",
		func() float64 { return float64(lim.Stats().Shards) })
	r.CounterFunc("sluice_limiter_contended_total", "Limiter shard lock acquisitions that had to wait for another call.",
		func() uint64 { return lim.Stats().Contended })
	r.CounterFunc("sluice_limiter_dropped_apps_total", "Applications dropped by the limiter's sweeper.",
		func() uint64 { return lim.Stats().Dropped })
}

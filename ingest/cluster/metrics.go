package cluster

import (
	"strconv"

	"github.com/sluice-dev/sluice/internal/metrics"
)

// nodeMetrics are registered once in Start; the routing path only increments.
type nodeMetrics struct {
	forwarded            *metrics.Counter
	forwardErrors        *metrics.Counter
	forwardLatency       *metrics.Histogram
	relayed              *metrics.Counter
	notOwner             *metrics.Counter
	callsWaited          *metrics.Counter
	handoffTimeouts      *metrics.Counter
	handoffs             *metrics.Counter
	handoffWait          *metrics.Histogram
	flushTimeouts        *metrics.Counter
	unreachable          *metrics.Counter
	unreachableDecisions *metrics.Counter
	unreachableUnits     *metrics.Counter
}

func (m *nodeMetrics) register(r *metrics.Registry, n *Node) {
	m.forwarded = r.Counter("sluice_cluster_forwarded_total", "Calls forwarded to their partition's owner and relayed back.")
	m.forwardErrors = r.Counter("sluice_cluster_forward_errors_total", "Forwards whose connection broke after the request was sent (answered 503).")
	m.forwardLatency = r.Histogram("sluice_cluster_forward_duration_seconds", "Round trip of a forwarded call to its owner.", metrics.DefaultLatencyBuckets)
	m.relayed = r.Counter("sluice_cluster_relayed_total", "Calls other nodes forwarded to this node as their owner, decided here and answered back.")
	m.notOwner = r.Counter("sluice_cluster_not_owner_total", "Forwarded calls this node received for partitions it does not own (the forwarder retries).")
	m.callsWaited = r.Counter("sluice_cluster_calls_waited_total", "Calls that waited for a partition handoff before they were decided.")
	m.handoffTimeouts = r.Counter("sluice_cluster_handoff_timeouts_total", "Calls answered 503 because no owner could decide them within --handoff-timeout.")
	m.handoffs = r.Counter("sluice_cluster_handoffs_total", "Partition assignments this node caught up on.")
	m.handoffWait = r.Histogram("sluice_cluster_handoff_catchup_seconds", "Time from an assignment to deciding for its partitions (reading them to the end).", metrics.DefaultLatencyBuckets)
	m.flushTimeouts = r.Counter("sluice_cluster_handoff_flush_timeouts_total", "Handoffs whose events were not all in Kafka within --handoff-timeout.")
	m.unreachable = r.Counter("sluice_cluster_owner_unreachable_total", "Forwards that could not connect to the owner.")
	m.unreachableDecisions = r.Counter("sluice_cluster_unreachable_decisions_total", "Calls decided locally because their owner was unreachable (--owner-unreachable local).")
	m.unreachableUnits = r.Counter("sluice_cluster_unreachable_units_total", "Usage units admitted by calls decided locally while their owner was unreachable.")
	r.GaugeFunc("sluice_cluster_owned_partitions", "Usage topic partitions this node decides for.", func() float64 { return float64(len(n.Owned())) })
}

func (m *nodeMetrics) registerProjection(r *metrics.Registry, pr *Projection) {
	r.CounterFunc("sluice_cluster_projected_events_total", "Other processes' usage events applied to this node's limiter.", func() uint64 { return pr.events.Load() })
	r.CounterFunc("sluice_cluster_projection_own_events_total", "This process's own events met in the log (already counted).", func() uint64 { return pr.own.Load() })
	r.CounterFunc("sluice_cluster_projection_refused_total", "Other processes' events the limiter refused: their usage would pass the largest int64.", func() uint64 { return pr.refused.Load() })
	r.CounterFunc("sluice_cluster_projection_skipped_total", "Events the projection applied to nothing (denials, unknown applications, undecodable).", func() uint64 { return pr.skipped.Load() })
	r.GaugeFunc("sluice_cluster_projection_lag_max_seconds", "Longest receive-to-apply time of another node's event since start: the replication lag behind the overshoot bound of local limits.",
		func() float64 { return pr.MaxLag().Seconds() })
	for p := range pr.Partitions() {
		part := int32(p)
		label := strconv.Itoa(p)
		r.GaugeFunc("sluice_cluster_projection_lag_records", "Records of the partition fetched by the broker's count and not yet applied.", func() float64 {
			recs, _ := pr.Lag(part)
			return float64(recs)
		}, "partition", label)
		r.GaugeFunc("sluice_cluster_projection_lag_seconds", "Receive-to-apply time of the partition's last applied event from another node.", func() float64 {
			_, d := pr.Lag(part)
			return d.Seconds()
		}, "partition", label)
	}
}

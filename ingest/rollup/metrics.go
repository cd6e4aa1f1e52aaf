package rollup

import "github.com/sluice-dev/sluice/internal/metrics"

// RegisterMetrics registers the rollup's figures (Stats) in reg for
// /metrics.
func (r *Rollup) RegisterMetrics(reg *metrics.Registry) {
	c := func(name, help string, f func(Stats) uint64) {
		reg.CounterFunc(name, help, func() uint64 { return f(r.Stats()) })
	}
	c("sluice_rollup_events_total", "Events folded into ClickHouse rollups.", func(s Stats) uint64 { return s.Events })
	c("sluice_rollup_batches_total", "Rollup batches written.", func(s Stats) uint64 { return s.Batches })
	c("sluice_rollup_skipped_total", "Records skipped because ClickHouse already had them.", func(s Stats) uint64 { return s.Skipped })
	c("sluice_rollup_undecodable_total", "Records that could not be decoded.", func(s Stats) uint64 { return s.Undecodable })
	c("sluice_rollup_write_errors_total", "Failed ClickHouse inserts (retried).", func(s Stats) uint64 { return s.WriteErrors })
	c("sluice_rollup_negative_total", "Negative usage values dropped (the API never accepts them).", func(s Stats) uint64 { return s.Negative })
	c("sluice_rollup_missing_total", "Usage records deleted from Kafka (retention) before they were rolled up: usage missing from ClickHouse.", func(s Stats) uint64 { return s.Missing })
	c("sluice_rollup_saturated_total", "Row sums that would have passed 9223372036854775807, stored as it.", func(s Stats) uint64 { return s.Saturated })
}

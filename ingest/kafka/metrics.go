package kafka

import "github.com/sluice-dev/sluice/internal/metrics"

// RegisterMetrics registers the producer's figures (Stats) in reg for
// /metrics.
func (p *Producer) RegisterMetrics(reg *metrics.Registry) {
	c := func(name, help string, f func(Stats) uint64) {
		reg.CounterFunc(name, help, func() uint64 { return f(p.Stats()) })
	}
	c("sluice_events_produced_total", "Usage events acknowledged by Kafka.", func(s Stats) uint64 { return s.Produced })
	c("sluice_events_spooled_total", "Usage events written to the on-disk spool.", func(s Stats) uint64 { return s.Spooled })
	c("sluice_events_spool_drained_total", "Spooled usage events sent and acknowledged.", func(s Stats) uint64 { return s.SpoolDrained })
	c("sluice_events_dropped_total", "Usage events dropped (full spool with the drop policy).", func(s Stats) uint64 { return s.Dropped })
	c("sluice_events_refused_total", "Usage events refused because the spool was full.", func(s Stats) uint64 { return s.Refused })
	c("sluice_producer_errors_total", "Failed produce attempts and spool I/O errors.", func(s Stats) uint64 { return s.Errors })
	c("sluice_spool_corrupt_frames_total", "Spool frames skipped because their checksum failed (their events are lost).", func(s Stats) uint64 { return s.Corrupt })
	c("sluice_journal_full_total", "Events that found the ack journal full and were written to the spool at once.", func(s Stats) uint64 { return s.JournalFull })
	c("sluice_events_recovered_total", "Events an earlier process left unconfirmed in the ack journal, sent by this one.", func(s Stats) uint64 { return s.Recovered })
	c("sluice_events_deduplicated_total", "Events of an earlier process found already in Kafka at recovery and not sent again.", func(s Stats) uint64 { return s.Deduplicated })
	reg.GaugeFunc("sluice_journal_pending", "Events in the ack journal not yet acknowledged by Kafka or written to the spool.", func() float64 { return float64(p.Stats().JournalPending) })
	reg.GaugeFunc("sluice_spool_bytes", "Current size of the on-disk spool.", func() float64 { return float64(p.Stats().SpoolBytes) })
	reg.GaugeFunc("sluice_spool_full", "1 while the spool is full.", func() float64 {
		if p.Stats().SpoolFull {
			return 1
		}
		return 0
	})
	reg.GaugeFunc("sluice_events_inflight", "Events handed to Kafka and not yet acknowledged.", func() float64 { return float64(p.Stats().InFlight) })
}

package e2e

import (
	"context"
	"sync"
	"testing"
	"time"
)

// outage is how long the broker or ClickHouse stays down.
const outage = 30 * time.Second

// steadyLoad is the load of the outage tests: 1,000 requests/s, mostly
// authreps, some batch reports with timestamps over the last 5 minutes.
func steadyLoad(s *stack, l *ledger) *load {
	return startLoad(loadOpts{
		listen: s.listen, apps: loadApps, workers: 4,
		reportShare: 0.05, batch: 20, spread: 5 * time.Minute,
		rate: 1000, seed: uint64(time.Now().UnixNano()),
	}, l)
}

// spoolWatch scrapes the API's producer metrics until stopped and keeps the
// largest spool size seen.
type spoolWatch struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	maxSize float64
	scrapes int
}

func watchSpool(listen string) *spoolWatch {
	w := &spoolWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := Scrape(ctx, listen)
			cancel()
			if err == nil {
				w.mu.Lock()
				w.maxSize = max(w.maxSize, m["sluice_spool_bytes"])
				w.scrapes++
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *spoolWatch) Stop() (maxSize float64, scrapes int) {
	close(w.stop)
	<-w.done
	return w.maxSize, w.scrapes
}

// requireAllAnswered fails unless every call of the load was acknowledged:
// while the broker or ClickHouse is down the API must keep answering.
func requireAllAnswered(t *testing.T, l *ledger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range l.answers {
		if k != "authrep-200" && k != "report-202" {
			t.Errorf("%d answers %s: every call should be acknowledged", n, k)
		}
	}
}

// outageUnderLoad takes a component down for `outage` while ld runs (load
// phase 1), brings it back, keeps the load 8 s more (phase 2), stops the load
// and requires every call to have been acknowledged.
func outageUnderLoad(t *testing.T, l *ledger, ld *load, what string, stop, start func()) {
	t.Helper()
	ld.phase.Store(1)
	down := time.Now()
	stop()
	time.Sleep(outage)
	start()
	t.Logf("%s down for %v", what, time.Since(down).Round(time.Millisecond))
	ld.phase.Store(2)
	time.Sleep(8 * time.Second)
	ld.Stop()
	ld.logLatency(t, "before the outage", "during the outage", "after the outage")
	t.Log(l.summary())
	requireAllAnswered(t, l)
}

// TestBrokerOutage: under steady load the broker is stopped for 30 s and
// started again with its log. Authrep keeps answering 200 with its normal
// latency (p99 during the outage within 10× the p99 before, plus 100 ms), the
// producer spools (spool size and spooled counter rise) and drains (every
// spooled event is sent, the spool ends empty), and ClickHouse's usage
// equals the acknowledged usage exactly afterwards.
func TestBrokerOutage(t *testing.T) {
	skipShort(t)
	s := newStack(t)
	l := newLedger()
	ld := steadyLoad(s, l)
	spool := watchSpool(s.listen)

	time.Sleep(8 * time.Second)
	outageUnderLoad(t, l, ld, "broker", s.broker.Stop, func() {
		if err := s.broker.Start(); err != nil {
			ld.Stop()
			t.Fatal(err)
		}
	})

	s.settle(2 * time.Minute)
	maxSpool, scrapes := spool.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := Scrape(ctx, s.listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("producer: spooled %v, drained %v, produced %v, dropped %v, refused %v, errors %v; largest spool seen %v bytes (%d scrapes)",
		m["sluice_events_spooled_total"], m["sluice_events_spool_drained_total"], m["sluice_events_produced_total"],
		m["sluice_events_dropped_total"], m["sluice_events_refused_total"], m["sluice_producer_errors_total"], maxSpool, scrapes)
	if m["sluice_events_spooled_total"] == 0 || maxSpool == 0 {
		t.Errorf("the spool never filled during a %v broker outage (spooled %v, largest %v bytes)", outage, m["sluice_events_spooled_total"], maxSpool)
	}
	if m["sluice_events_spool_drained_total"] != m["sluice_events_spooled_total"] || m["sluice_spool_bytes"] != 0 {
		t.Errorf("spool not drained: spooled %v, drained %v, %v bytes left",
			m["sluice_events_spooled_total"], m["sluice_events_spool_drained_total"], m["sluice_spool_bytes"])
	}
	if m["sluice_events_dropped_total"] != 0 || m["sluice_events_refused_total"] != 0 {
		t.Errorf("events dropped %v, refused %v", m["sluice_events_dropped_total"], m["sluice_events_refused_total"])
	}

	before, nb := ld.percentile(0, 0.99)
	during, nd := ld.percentile(1, 0.99)
	if nb < 1000 || nd < 1000 {
		t.Errorf("too few authreps to compare latency: %d before, %d during", nb, nd)
	}
	// Generous, for a shared machine: an authrep that waited on the broker
	// (dial or delivery timeouts) would take seconds.
	if bound := 10*before + 100*time.Millisecond; during > bound {
		t.Errorf("authrep p99 during the broker outage %v > %v (10× the p99 before, %v, plus 100ms)", during, bound, before)
	}
	s.checkClickHouse(l)
}

// TestClickHouseOutage: under steady load ClickHouse is stopped for 30 s
// (SIGTERM) and started again on the same data and ports. The API keeps
// answering, and afterwards ClickHouse's usage equals the acknowledged usage
// exactly: nothing lost, nothing counted twice.
func TestClickHouseOutage(t *testing.T) {
	skipShort(t)
	s := newStack(t)
	l := newLedger()
	ld := steadyLoad(s, l)

	time.Sleep(5 * time.Second)
	outageUnderLoad(t, l, ld, "ClickHouse", func() {
		if err := s.ch.Stop(); err != nil {
			t.Logf("stop ClickHouse: %v", err)
		}
	}, s.restartClickHouse)

	select {
	case <-s.rollup.Done():
		t.Errorf("the rollup process exited during the ClickHouse outage; it should wait and retry")
		s.startRollup()
	default:
	}
	s.settle(2 * time.Minute)
	s.checkClickHouse(l)
}

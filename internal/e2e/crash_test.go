package e2e

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestRollupCrash: 1,000,000 usage units reported through the HTTP API
// (authreps, and batch reports with explicit timestamps over the last 20
// minutes, across five apps and five metrics) while the rollup process is
// killed with SIGKILL at random moments, at least five times, and restarted.
// Afterwards ClickHouse's usage per (app, metric, minute), the metric
// hierarchy applied, equals exactly the acknowledged usage (200/202 answers).
//
// The minute of a report is its timestamp. The minute of an authrep is the
// server's receive time: the generator keeps authreps 600 ms clear of minute
// boundaries and brackets each one's stamp by its send and answer times, so
// its minute is known; an authrep whose bracket still straddles a boundary
// (counted and logged; normally none) makes the two minutes' checks bounds
// instead of equalities, while the (app, metric) totals stay exact.
func TestRollupCrash(t *testing.T) {
	skipShort(t)
	start := time.Now()
	s := newStack(t)
	t.Logf("stack up in %v", time.Since(start).Round(time.Millisecond))

	const budget = 1_000_000
	l := newLedger()
	ld := startLoad(loadOpts{
		listen: s.listen, apps: loadApps, workers: 8,
		reportShare: 0.03, batch: 50, spread: 20 * time.Minute,
		budget: budget, rate: 4000, seed: uint64(time.Now().UnixNano()),
	}, l)
	loadDone := make(chan struct{})
	go func() { ld.Wait(); close(loadDone) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills, killsUnderLoad := 0, 0
	for {
		time.Sleep(time.Duration(300+rng.IntN(1700)) * time.Millisecond)
		s.rollup.Kill()
		kills++
		select {
		case <-loadDone:
		default:
			killsUnderLoad++
		}
		s.startRollup()
		select {
		case <-loadDone:
			if kills >= 5 {
				goto done
			}
		default:
		}
	}
done:
	t.Logf("load done in %v; rollup killed %d times (%d while load ran); %s",
		time.Since(start).Round(time.Millisecond), kills, killsUnderLoad, l.summary())
	if killsUnderLoad < 5 {
		t.Errorf("only %d kills while the load ran, want at least 5", killsUnderLoad)
	}
	if got := ld.Sent(); got != budget {
		t.Fatalf("sent %d units, want %d", got, budget)
	}
	if l.ackedUnits != budget || l.unknownUnits != 0 {
		t.Errorf("acknowledged %d of %d units (%d with unknown outcome): the API should answer every call 200/202 here",
			l.ackedUnits, budget, l.unknownUnits)
	}
	s.settle(2 * time.Minute)
	s.checkClickHouse(l)
}

package region

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// TestShareAddsUp: the regions' shares of any max add up to it exactly,
// whatever their number, and differ by at most one unit.
func TestShareAddsUp(t *testing.T) {
	names := []string{"eu", "us", "ap", "sa", "af"}
	for n := 1; n <= len(names); n++ {
		for _, m := range []int64{0, 1, 2, 7, 100, 1001, 1 << 62} {
			var sum, lo, hi int64 = 0, m, 0
			for i := range n {
				var peers []Peer
				for j := range n {
					if j != i {
						peers = append(peers, Peer{Name: names[j]})
					}
				}
				s := NewShares(names[i], peers).Share(m)
				sum += s
				lo, hi = min(lo, s), max(hi, s)
			}
			if sum != m || hi-lo > 1 {
				t.Errorf("%d regions, max %d: shares add up to %d, from %d to %d", n, m, sum, lo, hi)
			}
		}
	}
}

// TestCap: a strict limit's max becomes the region's share plus the peers'
// usage applied to the open window (a child metric's usage counts toward its
// parent); other limits and other windows are untouched; Cap does not
// allocate; Sweep drops ended windows.
func TestCap(t *testing.T) {
	snap := testCatalog(t,
		catalog.LimitSpec{Metric: "hits", Period: "hour", Max: 1000, Strict: true},
		catalog.LimitSpec{Metric: "hits", Period: "day", Max: 5000},
		catalog.LimitSpec{Metric: "search", Period: "minute", Max: 90, Strict: true},
	)
	app := snap.Services["svc"].Apps["app0"]
	s := NewShares("eu", []Peer{{Name: "us"}, {Name: "ap"}}) // eu is second of ap, eu, us
	now := time.Date(2026, 12, 4, 15, 30, 20, 0, time.UTC)
	peer := func(at time.Time, usage ...event.Usage) {
		s.addPeer(app, &event.Event{TS: at.UnixMilli(), Usage: usage})
	}
	maxes := func() string {
		var out []int64
		ls, token := s.Cap(append([]limiter.Limit(nil), app.Plan.Limits...), app, now)
		s.Done(token)
		for _, l := range ls {
			out = append(out, l.Max)
		}
		return fmt.Sprint(out)
	}
	if got := maxes(); got != "[333 5000 30]" {
		t.Errorf("without peer usage: %s, want [333 5000 30]", got)
	}
	peer(now, event.Usage{Metric: "search", Value: 4}, event.Usage{Metric: "hits", Value: 6})
	peer(now.Add(-time.Minute), event.Usage{Metric: "search", Value: 100}) // the previous minute
	peer(now, event.Usage{Metric: "hits", Value: 9, Set: true})            // a set is not usage
	if got := maxes(); got != "[443 5000 34]" {
		t.Errorf("with peer usage: %s, want [443 5000 34]", got)
	}
	peer(now, event.Usage{Metric: "hits", Value: 10_000})
	if got := maxes(); got != "[1000 5000 34]" {
		t.Errorf("never above the plan's max: %s", got)
	}
	dst := make([]limiter.Limit, len(app.Plan.Limits))
	if n := testing.AllocsPerRun(100, func() {
		_, token := s.Cap(append(dst[:0], app.Plan.Limits...), app, now)
		s.Done(token)
	}); n != 0 {
		t.Errorf("Cap allocates %v times per call", n)
	}
	s.Sweep(now.Add(2 * time.Minute))
	if got := maxes(); got != "[1000 5000 30]" {
		t.Errorf("after the minute windows were swept: %s, want [1000 5000 30]", got)
	}
	s.Sweep(now.Add(2 * time.Hour))
	if got := maxes(); got != "[333 5000 30]" {
		t.Errorf("after every window was swept: %s, want [333 5000 30]", got)
	}
}

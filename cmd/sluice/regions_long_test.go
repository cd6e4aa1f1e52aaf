//go:build regions

package main

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

// The long multi-region runs: make test-regions (CI runs it time-boxed).

// TestRegionsThreeGlobalLimit is TestRegionsGlobalLimit with three regions.
func TestRegionsThreeGlobalLimit(t *testing.T) { testGlobalLimit(t, "east", "west", "south") }

// partitionCut is how long TestRegionsPartition cuts a region off:
// SLUICE_TEST_CUT (a Go duration), default 30 s.
func partitionCut(t *testing.T) time.Duration {
	if s := os.Getenv("SLUICE_TEST_CUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 5*time.Second {
			t.Fatalf("SLUICE_TEST_CUT=%q: want a duration of at least 5s", s)
		}
		return d
	}
	return 30 * time.Second
}

// TestRegionsPartition: region west is cut off from east (both directions)
// under load, then healed. Both keep answering within their normal latency;
// east's peer_up for west drops to 0 during the cut; the global limit's
// overshoot stays within the bound for a partition (what each region
// admitted while the other could not see it, plus rate × lag outside the
// cut); and once healed every region's counter equals the total admitted:
// nothing lost or counted twice.
func TestRegionsPartition(t *testing.T) {
	cut := partitionCut(t)
	const rate = 20 // per second per region: 2 callers pacing 100 ms
	// The max is reached during the cut, so that the cut decides the
	// overshoot.
	globalMax := int(cut.Seconds()) * rate
	rs := startRegions(t, globalMax, 100, "east", "west")
	setDelay(rs, 50*time.Millisecond)
	awaitHourRoom(cut + time.Minute)
	// strict drives the strict application alongside, the same way.
	strict := map[string]int{}
	phase := func(d time.Duration, during func()) map[string]*regionLoad {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		done := make(chan map[string]*regionLoad)
		sdone := make(chan map[string]*regionLoad)
		go func() { done <- drive(ctx, rs, "gcut", 2, 100*time.Millisecond, 0) }()
		go func() { sdone <- drive(ctx, rs, "scut", 2, 100*time.Millisecond, 0) }()
		if during != nil {
			during()
		}
		for name, l := range <-sdone {
			strict[name] += l.admitted
			if l.failed > 0 {
				t.Errorf("%s: %d strict calls failed", name, l.failed)
			}
		}
		return <-done
	}

	before := phase(3*time.Second, nil)
	lag := max(maxLag(t, rs, "east"), maxLag(t, rs, "west"))
	for _, r := range rs {
		r.proxy.Block()
	}
	during := phase(cut, func() {
		time.Sleep(5 * time.Second)
		for _, r := range rs {
			peer := rs[0].name
			if r == rs[0] {
				peer = rs[1].name
			}
			if up := peerMetric(t, r, "sluice_region_peer_up", peer); up != 0 {
				t.Errorf("%s: sluice_region_peer_up{region=%q} = %v during the cut", r.name, peer, up)
			}
		}
	})
	for _, r := range rs {
		r.proxy.Unblock()
	}
	after := phase(5*time.Second, nil)

	total, bound := 0, 0.0
	for _, r := range rs {
		b, d, a := before[r.name], during[r.name], after[r.name]
		total += b.admitted + d.admitted + a.admitted
		bound += float64(d.admitted) + (b.rate()+a.rate())*lag.Seconds() + 2
		t.Logf("%s: admitted %d before, %d during, %d after the cut; p99 %v before, %v during", r.name, b.admitted, d.admitted, a.admitted, p99(b.latencies), p99(d.latencies))
		if b.failed+d.failed+a.failed > 0 {
			t.Errorf("%s: %d calls failed", r.name, b.failed+d.failed+a.failed)
		}
		if normal, cutP99 := p99(b.latencies), p99(d.latencies); cutP99 > max(4*normal, 250*time.Millisecond) {
			t.Errorf("%s: p99 latency %v during the cut, %v before", r.name, cutP99, normal)
		}
	}
	t.Logf("max %d, admitted %d (overshoot %d, partition bound %.0f), lag outside the cut %v", globalMax, total, total-globalMax, bound, lag)
	if total < globalMax {
		t.Errorf("%d admitted in all, under the max %d", total, globalMax)
	}
	if float64(total-globalMax) > bound {
		t.Errorf("overshoot %d past the partition bound %.0f", total-globalMax, bound)
	}
	settle(t, rs, "gcut", func(*regionNode) int { return total })

	stotal := 0
	for _, n := range strict {
		stotal += n
	}
	t.Logf("strict: max %d, admitted %v, %d in all", globalMax, strict, stotal)
	if stotal > globalMax {
		t.Errorf("strict limit of %d admitted %d across the partition", globalMax, stotal)
	}
	settle(t, rs, "scut", func(*regionNode) int { return stotal })
}

// p99 is the 99th percentile of ds.
func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}

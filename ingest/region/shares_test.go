package region

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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
	app := snap.Services["svc"].App("app0")
	s := NewShares("eu", []Peer{{Name: "us"}, {Name: "ap"}}) // eu is second of ap, eu, us
	now := time.Date(2026, 12, 4, 15, 30, 20, 0, time.UTC)
	peer := func(at time.Time, usage ...event.Usage) {
		s.addPeer(app, &event.Event{TS: at.UnixMilli(), Usage: usage})
	}
	maxes := func() string {
		var out []int64
		ls, token := s.Cap(append([]limiter.Limit(nil), app.Plan().Limits...), app, now)
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
	dst := make([]limiter.Limit, len(app.Plan().Limits))
	if n := testing.AllocsPerRun(100, func() {
		_, token := s.Cap(append(dst[:0], app.Plan().Limits...), app, now)
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

// TestTakeAgainstDecisions: granting units away while decisions run never
// lets this region's admissions plus its grants pass its share: the escrow
// of take (lower the share, wait for the decisions that read the old one,
// take back what they used).
func TestTakeAgainstDecisions(t *testing.T) {
	snap := testCatalog(t, catalog.LimitSpec{Metric: "hits", Period: "hour", Max: 1000, Strict: true})
	app := snap.Services["svc"].App("app0")
	lim := limiter.New(limiter.Options{})
	s := NewShares("a", []Peer{{Name: "b"}}) // share 500
	rb := &Rebalancer{s: s, o: RebalanceOptions{Limiter: lim}}
	now := time.Now()
	start, _ := limiter.WindowBounds(app.Plan().Limits[0].Period, now)
	k := shareKey{app: app.Key, metric: app.Plan().Limits[0].Metric, unit: limiter.Hour, start: start}
	w := s.window(k, app, app.Plan().Limits[0])

	var admitted atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d limiter.Decision
			dst := make([]limiter.Limit, 1)
			usage := []limiter.Usage{{Metric: app.Plan().Limits[0].Metric, Value: 1}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				ls, token := s.Cap(append(dst[:0], app.Plan().Limits...), app, now)
				lim.Do(&limiter.Request{App: app.Key, Limits: ls, Parents: app.Service.Parents, Usage: usage, Mode: limiter.ModeAuthRep}, &d)
				s.Done(token)
				if d.Allowed {
					admitted.Add(1)
				}
				time.Sleep(20 * time.Microsecond)
			}
		}()
	}
	var granted int64
	for range 100 {
		for _, g := range rb.take([]give{{k, w, "b", 2}}) {
			granted += g.units
		}
		time.Sleep(200 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	if got := w.given.Load(); got != granted {
		t.Errorf("given %d, grants returned %d", got, granted)
	}
	if a := admitted.Load(); a+granted > 500 {
		t.Errorf("admitted %d and granted %d: past the share of 500", a, granted)
	} else if a+granted < 500-2 {
		t.Errorf("admitted %d and granted %d of a share of 500 wanted throughout", a, granted)
	}
	t.Logf("admitted %d, granted %d", admitted.Load(), granted)
}

// TestApplyShareRecords: what each share record read from a log changes.
func TestApplyShareRecords(t *testing.T) {
	snap := testCatalog(t, catalog.LimitSpec{Metric: "hits", Period: "hour", Max: 1000, Strict: true})
	rec := func(kind, from, to, proc string, units int64) string {
		return fmt.Sprintf(`{"kind":%q,"from":%q,"to":%q,"proc":%q,"tenant":"t","service":"svc","app":"app0","metric":"hits","period":"hour","window":1764860400,"units":%d,"free":7,"demand":3}`,
			kind, from, to, proc, units)
	}
	for _, c := range []struct {
		name          string
		value         string
		given, recv   int64
		peerStatusSet bool
	}{
		{"grant to here", rec("grant", "b", "a", "p2", 5), 0, 5, false},
		{"grant by an earlier process here", rec("grant", "a", "b", "old", 4), 4, 0, false},
		{"grant by this process", rec("grant", "a", "b", "me", 4), 0, 0, false},
		{"grant between others", rec("grant", "b", "c", "p2", 4), 0, 0, false},
		{"grant from an unknown region", rec("grant", "z", "a", "p2", 4), 0, 0, false},
		{"negative grant", rec("grant", "b", "a", "p2", -4), 0, 0, false},
		{"status of a peer", rec("status", "b", "", "p2", 0), 0, 0, true},
		{"status of an unknown region", rec("status", "z", "", "p2", 0), 0, 0, false},
		{"status of this region", rec("status", "a", "", "old", 0), 0, 0, false},
		{"not JSON", "grant", 0, 0, false},
		{"unknown application", strings.Replace(rec("grant", "b", "a", "p2", 5), "app0", "nope", 1), 0, 0, false},
		{"not a strict limit", strings.Replace(rec("grant", "b", "a", "p2", 5), `"hour"`, `"day"`, 1), 0, 0, false},
		{"too large", rec("grant", "b", "a", "p2", 5)[:len(rec("grant", "b", "a", "p2", 5))-1] + `,"x":"` + strings.Repeat("x", maxShareRecord) + `"}`, 0, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewShares("a", []Peer{{Name: "b"}, {Name: "c"}})
			rb := &Rebalancer{s: s, proc: "me", o: RebalanceOptions{Region: "a", Peers: []Peer{{Name: "b"}, {Name: "c"}}, Catalog: fixedCatalog{snap}},
				status: map[shareKey]map[string]peerStatus{}}
			rb.apply([]byte(c.value))
			app := snap.Services["svc"].App("app0")
			w := s.get(shareKey{app: app.Key, metric: app.Plan().Limits[0].Metric, unit: limiter.Hour, start: 1764860400})
			var given, recv int64
			if w != nil {
				given, recv = w.given.Load(), w.recv.Load()
			}
			if given != c.given || recv != c.recv {
				t.Errorf("given %d, received %d; want %d and %d", given, recv, c.given, c.recv)
			}
			if got := len(rb.status) > 0; got != c.peerStatusSet {
				t.Errorf("peer status kept: %v, want %v", got, c.peerStatusSet)
			}
		})
	}
}

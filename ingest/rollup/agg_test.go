package rollup

import (
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/event"
)

// TestAggregatorHierarchy: children are added into their ancestors, except
// for entries the caller already flattened (3scale's flat_usage), which
// count only where they were sent.
func TestAggregatorHierarchy(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	minute := t0.Unix()
	ev := func(usage ...event.Usage) event.Event {
		return event.Event{Kind: event.KindAuthrep, TS: t0.UnixMilli(), TenantID: "t1", ServiceID: "s1", AppID: "a", Usage: usage}
	}
	for _, tc := range []struct {
		name string
		ev   event.Event
		want map[sumKey]int64
	}{
		{"child into parent",
			ev(event.Usage{Metric: "search", Value: 2}),
			map[sumKey]int64{{"a", "search", minute}: 2, {"a", "hits", minute}: 2}},
		{"child and parent sent",
			ev(event.Usage{Metric: "hits", Value: 1}, event.Usage{Metric: "search", Value: 2}),
			map[sumKey]int64{{"a", "search", minute}: 2, {"a", "hits", minute}: 3}},
		{"flat: the parent already holds the child",
			ev(event.Usage{Metric: "hits", Value: 3, Flat: true}, event.Usage{Metric: "search", Value: 2, Flat: true}),
			map[sumKey]int64{{"a", "search", minute}: 2, {"a", "hits", minute}: 3}},
		{"flat child alone",
			ev(event.Usage{Metric: "upload", Value: 4, Flat: true}),
			map[sumKey]int64{{"a", "upload", minute}: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAggregator(testHierarchy, false)
			a.add(&tc.ev, 0, 0)
			got := map[sumKey]int64{}
			for k, v := range a.minute {
				got[sumKey{k.app, k.metric, k.t}] += v
			}
			diff(t, "minute", tc.want, got)
		})
	}
}

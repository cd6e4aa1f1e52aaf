package e2e

import "testing"

// TestLedgerBounds checks the expectations the end-to-end tests compare
// ClickHouse and authorize against: exact for acknowledged calls with a known
// minute, widened only by ambiguous and unanswered calls, hierarchy applied.
func TestLedgerBounds(t *testing.T) {
	const m = 60_000 // one minute in ms
	l := newLedger()
	l.ack(call{app: "a1", usage: []unit{{"suggest", 3}, {"bytes", 2}}, lo: 10*m + 5, hi: 10*m + 9})
	l.ack(call{app: "a1", usage: []unit{{"hits", 1}}, lo: 11 * m, hi: 11 * m})
	l.ack(call{app: "a1", usage: []unit{{"images", 4}}, lo: 12*m - 100, hi: 12*m + 100}) // ambiguous: minute 11 or 12
	l.unknownOutcome(call{app: "a1", usage: []unit{{"search", 7}}, lo: 13 * m, hi: 13 * m})
	l.ack(call{app: "a2", usage: []unit{{"hits", 100}}, lo: 10 * m, hi: 10 * m})

	for _, tc := range []struct {
		app, metric string
		from, to    int64
		lo, hi      int64
	}{
		{"a1", "suggest", 10, 11, 3, 3},
		{"a1", "search", 10, 11, 3, 3},
		{"a1", "hits", 10, 11, 3, 3},
		{"a1", "bytes", 10, 11, 2, 2},
		{"a1", "hits", 11, 12, 1, 5},   // the ambiguous images call may be in 11
		{"a1", "hits", 12, 13, 0, 4},   // ... or in 12
		{"a1", "hits", 11, 13, 5, 5},   // surely in one of them
		{"a1", "images", 0, 100, 4, 4}, // totals are exact
		{"a1", "search", 13, 14, 0, 7}, // unanswered: maybe recorded
		{"a1", "hits", 0, 100, 8, 15},
		{"a1", "suggest", 0, 100, 3, 3},
		{"a2", "hits", 10, 11, 100, 100},
		{"a2", "search", 10, 11, 0, 0},
		{"a3", "hits", 0, 100, 0, 0},
	} {
		lo, hi := l.bounds(tc.app, tc.metric, tc.from, tc.to)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("bounds(%s, %s, [%d, %d)) = [%d, %d], want [%d, %d]", tc.app, tc.metric, tc.from, tc.to, lo, hi, tc.lo, tc.hi)
		}
	}
	if l.ackedUnits != 110 || l.unknownUnits != 7 || l.ambiguous != 1 {
		t.Errorf("acked %d, unknown %d, ambiguous %d; want 110, 7, 1", l.ackedUnits, l.unknownUnits, l.ambiguous)
	}
}

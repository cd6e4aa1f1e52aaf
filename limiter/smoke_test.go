package limiter

import (
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	now := time.Date(2026, 5, 15, 10, 30, 20, 0, time.UTC)
	l := New(Options{Clock: func() time.Time { return now }})
	req := &Request{App: 1, Limits: []Limit{{0, Period{Unit: Minute}, 2}, {0, Period{Unit: Sliding, Window: time.Minute}, 3}, {0, Period{Unit: Month}, 10}},
		Parents: []MetricID{NoParent}, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	var d Decision
	for i, want := range []bool{true, true, false} {
		l.Do(req, &d)
		if d.Allowed != want {
			t.Fatalf("call %d: allowed %v, want %v: %+v", i, d.Allowed, want, d)
		}
		t.Logf("%+v", d)
	}
	now = now.Add(time.Minute)
	l.Do(req, &d)
	t.Logf("%+v", d)
	if !d.Allowed {
		t.Fatal("denied")
	}
}

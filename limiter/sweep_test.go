package limiter

import (
	"testing"
	"time"
)

func TestSweep(t *testing.T) {
	clock := newFakeClock("2024-12-31 23:57:00")
	l := New(Options{Shards: 8, Clock: clock.Now})
	minute := []Limit{lim(mHits, "minute", 100), lim(mHits, "sliding:10s", 100)}
	long := []Limit{lim(mHits, "eternity", 100), lim(mHits, "year", 100)}
	const apps = 5000
	var d Decision
	plan := func(k AppKey) []Limit {
		if k%2 == 0 {
			return minute
		}
		return long
	}
	for k := range AppKey(apps) {
		l.Do(&Request{App: k, Limits: plan(k), Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: 1}}, Mode: ModeAuthRep}, &d)
	}
	check := func(stage string, wantApps int64, wantEternity int64) {
		t.Helper()
		if s := l.Stats(); s.Apps != wantApps {
			t.Fatalf("%s: %d apps, want %d (%+v)", stage, s.Apps, wantApps, s)
		}
		// Dropping apps moves others in the tables: every survivor must still be found.
		for k := range AppKey(apps) {
			l.Do(&Request{App: k, Limits: plan(k), Parents: modelParents, Mode: ModeAuthorize}, &d)
			want := int64(0)
			if k%2 == 1 {
				want = wantEternity
			}
			if k%2 == 1 && d.Reports[0].Current != want {
				t.Fatalf("%s: app %d eternity %d, want %d", stage, k, d.Reports[0].Current, want)
			}
			if k%2 == 0 && (d.Reports[0].Current != 0 || d.Reports[1].Current != 0) {
				t.Fatalf("%s: app %d: %+v", stage, k, d.Reports)
			}
		}
	}
	l.Sweep()
	if s := l.Stats(); s.Apps != apps {
		t.Fatalf("nothing is dead yet, but %d apps left", s.Apps)
	}

	clock.Add(2 * time.Minute) // minute and sliding windows closed; still 2024
	l.Sweep()
	check("minute windows closed", apps/2, 1)

	clock.Add(2 * time.Minute) // 2025: the year counters closed, eternity lives on
	l.Sweep()
	check("new year", apps/2, 1)

	for k := AppKey(1); k < apps; k += 2 {
		l.Do(&Request{App: k, Limits: long, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: 0, Set: true}}, Mode: ModeReport}, &d)
	}
	l.Sweep()
	check("eternity set to 0", 0, 0)
	if s := l.Stats(); s.Dropped != apps {
		t.Errorf("dropped %d, want %d", s.Dropped, apps)
	}
	for i := range l.shards {
		if n := len(l.shards[i].slots); n > minSlots {
			t.Errorf("shard %d still has %d slots for no app", i, n)
		}
	}
}

// TestIncrementalSweep checks that calls alone, without Sweep, drop dead
// apps of the shards they use.
func TestIncrementalSweep(t *testing.T) {
	clock := newFakeClock("2025-06-01 10:00:00")
	l := New(Options{Shards: 4, Clock: clock.Now})
	limits := []Limit{lim(mHits, "minute", 100)}
	var d Decision
	for k := range AppKey(5000) {
		l.Do(&Request{App: k, Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: 1}}, Mode: ModeAuthRep}, &d)
	}
	clock.Add(time.Minute)
	for i := range 200_000 {
		l.Do(&Request{App: AppKey(i % 64), Limits: limits, Parents: modelParents, Mode: ModeAuthorize}, &d)
	}
	if s := l.Stats(); s.Apps != 0 || s.Dropped != 5000 {
		t.Errorf("after a minute of calls: %+v, want every app dropped", s)
	}
}

// TestHugePages runs a table past the huge-page threshold with the option
// on: the advice must not disturb anything.
func TestHugePages(t *testing.T) {
	clock := newFakeClock("2025-06-01 10:00:00")
	l := New(Options{Shards: 1, Clock: clock.Now, HugePages: true})
	limits := []Limit{lim(mHits, "eternity", 100)}
	var d Decision
	const apps = 20000 // 2.5 MiB of records in one table
	for k := range AppKey(apps) {
		l.Do(&Request{App: k, Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: int64(k % 7)}}, Mode: ModeReport}, &d)
	}
	for k := range AppKey(apps) {
		l.Do(&Request{App: k, Limits: limits, Parents: modelParents, Mode: ModeAuthorize}, &d)
		if d.Reports[0].Current != int64(k%7) {
			t.Fatalf("app %d: %d", k, d.Reports[0].Current)
		}
	}
}

package query

import (
	"sort"
	"time"

	"github.com/sluice-dev/sluice/limiter"
)

// Granularity is the width of a series bucket: a calendar unit in the
// query's time zone, or Total for one bucket over the whole range.
type Granularity uint8

// Granularities.
const (
	Minute Granularity = iota + 1
	Hour
	Day
	Week // starts Monday, as 3scale's week limits
	Month
	Total
)

var granularityNames = [...]string{Minute: "minute", Hour: "hour", Day: "day", Week: "week", Month: "month", Total: "total"}

// String returns the API's spelling of g.
func (g Granularity) String() string {
	if int(g) < len(granularityNames) {
		return granularityNames[g]
	}
	return "invalid"
}

// ParseGranularity parses minute, hour, day, week, month or total.
func ParseGranularity(s string) (Granularity, bool) {
	for g, n := range granularityNames {
		if n != "" && n == s {
			return Granularity(g), true
		}
	}
	return 0, false
}

// MaxBuckets bounds the buckets of one series: a day at minute resolution
// (1,440) fits, a month of minutes does not. Larger requests are refused with
// too_many_buckets rather than answered slowly.
const MaxBuckets = 1500

// Bounds of from and to. DateTime in ClickHouse ends in 2106; the upper bound
// leaves room for a bucket rounded up.
var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// buckets are consecutive half-open intervals [b[i], b[i+1]); len(b)-1
// buckets. Every boundary is a whole UTC minute.
type buckets []time.Time

func (b buckets) n() int { return len(b) - 1 }

// index returns the bucket holding instant t, or -1 outside the range.
func (b buckets) index(t time.Time) int {
	if len(b) < 2 || t.Before(b[0]) || !t.Before(b[len(b)-1]) {
		return -1
	}
	// first boundary strictly after t, minus one
	return sort.Search(len(b), func(i int) bool { return b[i].After(t) }) - 1
}

// makeBuckets returns the calendar buckets of g in loc that cover [from, to):
// from is moved back to the start of its bucket and to forward to the end of
// its bucket, so that every bucket is whole. Total is one bucket whose ends
// are rounded to whole minutes (the finest grain stored). ok is false when
// more than max buckets would be needed.
func makeBuckets(from, to time.Time, g Granularity, loc *time.Location, max int) (b buckets, ok bool) {
	if g == Total {
		start := from.UTC().Truncate(time.Minute)
		end := ceilMinute(to)
		if !end.After(start) {
			end = start.Add(time.Minute)
		}
		return buckets{start, end}, true
	}
	start := floorBucket(from, g, loc)
	b = buckets{start}
	for cur := start; cur.Before(to); {
		next := nextBoundary(cur, g, loc)
		if !next.After(cur) { // cannot happen for real zones; never loop
			next = cur.Add(time.Minute)
		}
		if len(b) > max {
			return nil, false
		}
		b = append(b, next)
		cur = next
	}
	if len(b) == 1 { // empty range: one bucket
		b = append(b, nextBoundary(start, g, loc))
	}
	return b, true
}

func ceilMinute(t time.Time) time.Time {
	f := t.UTC().Truncate(time.Minute)
	if f.Before(t) {
		f = f.Add(time.Minute)
	}
	return f
}

// floorBucket returns the first instant of the bucket of g holding t.
func floorBucket(t time.Time, g Granularity, loc *time.Location) time.Time {
	return limiter.LocalFloor(g.unit(), t, loc)
}

// nextBoundary returns the start of the bucket after the one starting at s.
func nextBoundary(s time.Time, g Granularity, loc *time.Location) time.Time {
	return limiter.LocalNext(g.unit(), s, loc)
}

// unit is the limiter's calendar unit of g; Total has none (minutes).
func (g Granularity) unit() limiter.Unit {
	switch g {
	case Hour:
		return limiter.Hour
	case Day:
		return limiter.Day
	case Week:
		return limiter.Week
	case Month:
		return limiter.Month
	}
	return limiter.Minute
}

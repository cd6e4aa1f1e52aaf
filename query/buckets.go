package query

import (
	"sort"
	"time"
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
	switch g {
	case Minute:
		// Every offset in use is a whole number of minutes, so local minutes
		// are UTC minutes.
		return t.UTC().Truncate(time.Minute)
	case Hour:
		lt := t.In(loc)
		return t.UTC().Truncate(time.Minute).Add(-time.Duration(lt.Minute()) * time.Minute)
	case Day:
		lt := t.In(loc)
		return firstInstant(lt.Year(), lt.Month(), lt.Day(), loc)
	case Week:
		lt := t.In(loc)
		back := (int(lt.Weekday()) + 6) % 7 // days since Monday
		return firstInstant(lt.Year(), lt.Month(), lt.Day()-back, loc)
	case Month:
		lt := t.In(loc)
		return firstInstant(lt.Year(), lt.Month(), 1, loc)
	}
	return t.UTC().Truncate(time.Minute)
}

// nextBoundary returns the start of the bucket after the one starting at s.
func nextBoundary(s time.Time, g Granularity, loc *time.Location) time.Time {
	switch g {
	case Minute:
		return s.Add(time.Minute)
	case Hour:
		// An hour later, back to the local hour's start: in zones whose
		// offset changes by 30 minutes the bucket around the change is
		// shorter, never longer, than an hour. A DST fall-back repeats a
		// local hour: the two are separate buckets (their instants differ).
		n := floorBucket(s.Add(time.Hour), Hour, loc)
		if !n.After(s) {
			n = s.Add(time.Hour)
		}
		// An offset change that is not a whole hour (Chatham's at :45)
		// starts a new local hour of its own.
		if _, end := s.In(loc).ZoneBounds(); !end.IsZero() && end.After(s) && end.Before(n) {
			n = end.UTC()
		}
		return n
	case Day:
		lt := s.In(loc)
		return firstInstant(lt.Year(), lt.Month(), lt.Day()+1, loc)
	case Week:
		lt := s.In(loc)
		return firstInstant(lt.Year(), lt.Month(), lt.Day()+7, loc)
	case Month:
		lt := s.In(loc)
		return firstInstant(lt.Year(), lt.Month()+1, 1, loc)
	}
	return s.Add(time.Minute)
}

// firstInstant returns the first instant whose local date in loc is the
// given one (normalized like time.Date). Usually that is local midnight;
// where a DST change skips midnight it is the instant of the change, and
// where a change repeats midnight it is the earlier of the two.
func firstInstant(y int, m time.Month, d int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	want := time.Date(y, m, d, 0, 0, 0, 0, time.UTC) // normalized date
	date := func(x time.Time) time.Time {
		lx := x.In(loc)
		return time.Date(lx.Year(), lx.Month(), lx.Day(), 0, 0, 0, 0, time.UTC)
	}
	lt := t.In(loc)
	switch {
	case date(t).Before(want):
		// time.Date used the offset before a change that skips midnight:
		// the day begins when the new offset does.
		_, end := t.ZoneBounds()
		if !end.IsZero() && date(end).Equal(want) {
			return end.UTC()
		}
	case lt.Hour() != 0 || lt.Minute() != 0:
		// Midnight does not exist and time.Date moved forward: the day
		// begins at the change.
		start, _ := t.ZoneBounds()
		if !start.IsZero() && date(start).Equal(want) {
			return start.UTC()
		}
	default:
		// Midnight exists; if the zone began after a fall-back that repeats
		// it, the earlier midnight (in the previous offset) comes first.
		start, _ := t.ZoneBounds()
		if !start.IsZero() && start.Before(t) {
			p := start.Add(-time.Nanosecond)
			if date(p).Equal(want) {
				_, off := p.Zone()
				e := want.Add(-time.Duration(off) * time.Second)
				ps, _ := p.ZoneBounds()
				if !e.Before(ps) && e.Before(start) {
					return e.UTC()
				}
			}
		}
	}
	return t.UTC()
}

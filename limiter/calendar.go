package limiter

import "time"

// LocalFloor returns the first instant of the calendar window of u (Minute,
// Hour, Day, Week starting on Monday, Month or Year) in loc that holds t: the
// query API's buckets in a time zone. Minute is the default for other units.
// With loc UTC it agrees with WindowBounds.
func LocalFloor(u Unit, t time.Time, loc *time.Location) time.Time {
	switch u {
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
	case Year:
		lt := t.In(loc)
		return firstInstant(lt.Year(), 1, 1, loc)
	}
	return t.UTC().Truncate(time.Minute)
}

// LocalNext returns the start of the window of u in loc after the one
// starting at s (a LocalFloor). Around a DST change windows are as long as
// the local calendar makes them: a 25-hour day, two separate repeated hours.
func LocalNext(u Unit, s time.Time, loc *time.Location) time.Time {
	switch u {
	case Minute:
		return s.Add(time.Minute)
	case Hour:
		// An hour later, back to the local hour's start: in zones whose
		// offset changes by 30 minutes the bucket around the change is
		// shorter, never longer, than an hour. A DST fall-back repeats a
		// local hour: the two are separate buckets (their instants differ).
		n := LocalFloor(Hour, s.Add(time.Hour), loc)
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
	case Year:
		lt := s.In(loc)
		return firstInstant(lt.Year()+1, 1, 1, loc)
	}
	return s.Add(time.Minute)
}

// LocalDayStart returns the first instant of the local date (y, m, d) in loc
// (normalized like time.Date): see firstInstant.
func LocalDayStart(y int, m time.Month, d int, loc *time.Location) time.Time {
	return firstInstant(y, m, d, loc)
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

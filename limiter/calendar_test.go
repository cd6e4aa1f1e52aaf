package limiter

import (
	"testing"
	"time"
)

// TestLocalWindowsAgreeInUTC: in UTC the time-zone windows the query API
// uses are the limiter's own windows, for every calendar unit.
func TestLocalWindowsAgreeInUTC(t *testing.T) {
	for _, u := range []Unit{Minute, Hour, Day, Week, Month, Year} {
		for _, at := range []time.Time{
			time.Date(2026, 12, 4, 13, 27, 59, 0, time.UTC),
			time.Date(2024, 2, 29, 23, 59, 59, 999, time.UTC),
			time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2099, 12, 31, 12, 0, 0, 0, time.UTC),
		} {
			s, e := CalendarBounds(u, at.Unix())
			f := LocalFloor(u, at, time.UTC)
			if f.Unix() != s || LocalNext(u, f, time.UTC).Unix() != e {
				t.Errorf("%v at %v: local [%v, %v), limiter [%v, %v)", u, at, f, LocalNext(u, f, time.UTC),
					time.Unix(s, 0).UTC(), time.Unix(e, 0).UTC())
			}
		}
	}
}

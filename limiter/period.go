package limiter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bounds of a sliding window accepted by ParsePeriod.
const (
	MinSlidingWindow = time.Second
	MaxSlidingWindow = 24 * time.Hour
)

var unitNames = [...]string{
	Minute:   "minute",
	Hour:     "hour",
	Day:      "day",
	Week:     "week",
	Month:    "month",
	Year:     "year",
	Eternity: "eternity",
	Sliding:  "sliding",
	Second:   "second",
}

// ErrPeriod is wrapped by every error ParsePeriod returns.
var ErrPeriod = errors.New("invalid period")

// ParsePeriod parses a limit's period: one of "minute", "hour", "day", "week",
// "month", "year", "eternity", or "sliding:<duration>" where duration is a Go
// duration between 1s and 24h that is a whole number of milliseconds
// ("sliding:10s", "sliding:1m", "sliding:1h30m").
func ParsePeriod(s string) (Period, error) {
	if rest, ok := strings.CutPrefix(s, "sliding:"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return Period{}, fmt.Errorf("%w %q: %w", ErrPeriod, s, err)
		}
		if d < MinSlidingWindow || d > MaxSlidingWindow {
			return Period{}, fmt.Errorf("%w %q: sliding window must be between %v and %v", ErrPeriod, s, MinSlidingWindow, MaxSlidingWindow)
		}
		if d%time.Millisecond != 0 {
			return Period{}, fmt.Errorf("%w %q: sliding window must be a whole number of milliseconds", ErrPeriod, s)
		}
		return Period{Unit: Sliding, Window: d}, nil
	}
	for u := Minute; u <= Eternity; u++ {
		if s == unitNames[u] {
			return Period{Unit: u}, nil
		}
	}
	return Period{}, fmt.Errorf("%w %q: want minute, hour, day, week, month, year, eternity or sliding:<duration>", ErrPeriod, s)
}

// String returns the period's canonical text, the inverse of ParsePeriod
// (Second, which ParsePeriod refuses, prints as "second"):
// "day", "sliding:1m", "sliding:1h30m", "sliding:1.5s".
func (p Period) String() string {
	var buf [40]byte
	return string(p.AppendText(buf[:0]))
}

// AppendText appends the period's canonical text (as String) to dst. It does
// not allocate when dst has room.
func (p Period) AppendText(dst []byte) []byte {
	if p.Unit == Sliding {
		dst = append(dst, "sliding:"...)
		return appendDuration(dst, p.Window)
	}
	if (p.Unit >= Minute && p.Unit <= Eternity) || p.Unit == Second {
		return append(dst, unitNames[p.Unit]...)
	}
	dst = append(dst, "unit("...)
	dst = strconv.AppendUint(dst, uint64(p.Unit), 10)
	return append(dst, ')')
}

// appendDuration writes d like time.Duration.String but without zero
// components ("1m", not "1m0s"; "1h30m", not "1h30m0s"), so that the text is
// canonical and still parses with time.ParseDuration.
func appendDuration(dst []byte, d time.Duration) []byte {
	if d == 0 {
		return append(dst, "0s"...)
	}
	u := uint64(d)
	if d < 0 {
		dst = append(dst, '-')
		u = -u
	}
	if u < uint64(time.Second) {
		// Sub-second windows are never valid limits; keep them readable anyway.
		dst = strconv.AppendUint(dst, u, 10)
		return append(dst, "ns"...)
	}
	h := u / uint64(time.Hour)
	u -= h * uint64(time.Hour)
	m := u / uint64(time.Minute)
	u -= m * uint64(time.Minute)
	if h > 0 {
		dst = strconv.AppendUint(dst, h, 10)
		dst = append(dst, 'h')
	}
	if m > 0 {
		dst = strconv.AppendUint(dst, m, 10)
		dst = append(dst, 'm')
	}
	if u > 0 {
		s := u / uint64(time.Second)
		frac := u % uint64(time.Second)
		dst = strconv.AppendUint(dst, s, 10)
		if frac > 0 {
			// Nine digits, trailing zeros trimmed.
			var digits [9]byte
			for i := 8; i >= 0; i-- {
				digits[i] = byte('0' + frac%10)
				frac /= 10
			}
			n := 9
			for n > 0 && digits[n-1] == '0' {
				n--
			}
			dst = append(dst, '.')
			dst = append(dst, digits[:n]...)
		}
		dst = append(dst, 's')
	}
	return dst
}

// WindowBounds returns the window of period p containing now, in unix
// seconds: [start, end) for calendar periods (UTC; weeks start on Monday),
// (0, 0) for eternity and (now-window, now) for sliding windows.
func WindowBounds(p Period, now time.Time) (start, end int64) {
	sec := now.Unix()
	if p.Unit == Sliding {
		return (now.UnixNano() - int64(slidingWindow(p.Window))) / int64(time.Second), sec
	}
	return calBounds(p.Unit, sec)
}

// CalendarBounds is WindowBounds for a calendar unit u from unix seconds:
// the UTC window [start, end) of u holding sec ((0, 0) for eternity). The
// rollups' grains and the query API's UTC reads use it, so that every part
// of Sluice cuts time where the limiter does.
func CalendarBounds(u Unit, sec int64) (start, end int64) { return calBounds(u, sec) }

// calBounds is WindowBounds for calendar units from unix seconds. It is pure
// integer arithmetic (a few multiplications even for month and year; see
// BenchmarkCalBounds), so the hot path computes it per call instead of caching
// boundaries: no shared state, nothing to invalidate when a test clock jumps.
func calBounds(u Unit, sec int64) (start, end int64) {
	switch u {
	case Second:
		return sec, sec + 1
	case Minute:
		start = sec - floorMod(sec, 60)
		return start, start + 60
	case Hour:
		start = sec - floorMod(sec, 3600)
		return start, start + 3600
	case Day:
		start = sec - floorMod(sec, 86400)
		return start, start + 86400
	case Week:
		days := floorDiv(sec, 86400)
		// 1970-01-01 was a Thursday: Monday-based weekday 3.
		start = (days - floorMod(days+3, 7)) * 86400
		return start, start + 7*86400
	case Month:
		y, m, _ := civilFromDays(floorDiv(sec, 86400))
		ny, nm := y, m+1
		if nm > 12 {
			ny, nm = y+1, 1
		}
		return daysFromCivil(y, m, 1) * 86400, daysFromCivil(ny, nm, 1) * 86400
	case Year:
		y, _, _ := civilFromDays(floorDiv(sec, 86400))
		return daysFromCivil(y, 1, 1) * 86400, daysFromCivil(y+1, 1, 1) * 86400
	}
	return 0, 0 // Eternity (and unknown units, which behave like it)
}

// periodSeconds orders periods by length for the "most constrained" tie
// break: calendar units by their nominal length, sliding by their window.
func periodSeconds(p Period) int64 {
	switch p.Unit {
	case Second:
		return 1
	case Minute:
		return 60
	case Hour:
		return 3600
	case Day:
		return 86400
	case Week:
		return 7 * 86400
	case Month:
		return 2629746 // average Gregorian month
	case Year:
		return 31556952 // average Gregorian year
	case Sliding:
		return int64(slidingWindow(p.Window) / time.Second)
	}
	return 1 << 62 // Eternity
}

func floorDiv(a, b int64) int64 {
	if a >= 0 && b > 0 {
		return int64(uint64(a) / uint64(b)) // unsigned division is cheaper
	}
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := m + 9
	if m > 2 {
		mp = m - 3
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

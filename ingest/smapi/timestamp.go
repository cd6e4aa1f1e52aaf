package smapi

import (
	"bytes"
	"time"
)

// maxUnixSeconds bounds a unix timestamp the parser takes as it is; larger
// ones are clamped to it (a report timestamp that far away is outside the
// accepted window anyway, which is what the caller is told).
const maxUnixSeconds = 1 << 40

// parseTimestamp parses a report timestamp the way 3scale does: a unix time
// in seconds (an optionally signed integer), or a date with optional time
// and zone in the usual forms ("2010-04-26 19:30:25 -02:00", "2010-04-26
// 19:30:25 +0200", "2010-04-26 19:30:25 UTC", "2010-04-26T19:30:25Z",
// "2012/10/01", "2010-04-26 19:30"). A date without a zone is UTC. It
// returns unix milliseconds; ok is false when v is empty or cannot be read
// as a time, in which case 3scale uses the time of the report.
func parseTimestamp(v []byte) (ms int64, ok bool) {
	s := bytes.TrimSpace(v)
	if len(s) == 0 {
		return 0, false
	}
	if sec, ok := parseUnixSeconds(s); ok {
		return sec * 1000, true
	}
	return parseDate(s)
}

// parseUnixSeconds parses an optionally signed decimal integer, clamped to
// ±maxUnixSeconds.
func parseUnixSeconds(s []byte) (int64, bool) {
	neg := false
	if s[0] == '+' || s[0] == '-' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= maxUnixSeconds {
			n = n*10 + int64(c-'0')
		}
	}
	n = min(n, maxUnixSeconds)
	if neg {
		n = -n
	}
	return n, true
}

// dateReader walks a date string.
type dateReader struct {
	s []byte
	i int
}

// num reads 1 to max digits.
func (r *dateReader) num(max int) (int, bool) {
	n, k := 0, 0
	for r.i < len(r.s) && k < max && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
		n = n*10 + int(r.s[r.i]-'0')
		r.i++
		k++
	}
	return n, k > 0
}

// byte reads c if it is next.
func (r *dateReader) byte(c byte) bool {
	if r.i < len(r.s) && r.s[r.i] == c {
		r.i++
		return true
	}
	return false
}

func (r *dateReader) spaces() {
	for r.i < len(r.s) && r.s[r.i] == ' ' {
		r.i++
	}
}

func (r *dateReader) done() bool { return r.i == len(r.s) }

// parseDate reads YYYY-MM-DD or YYYY/MM/DD, then optionally a time
// (HH:MM[:SS[.fraction]], after a space or a T), then optionally a zone (Z,
// UTC, GMT, ±HH:MM, ±HHMM or ±HH). Anything else is not a date.
func parseDate(s []byte) (int64, bool) {
	r := dateReader{s: s}
	year, ok := r.num(4)
	if !ok || r.i != 4 {
		return 0, false
	}
	sep := byte('-')
	if !r.byte('-') {
		if !r.byte('/') {
			return 0, false
		}
		sep = '/'
	}
	month, ok := r.num(2)
	if !ok || !r.byte(sep) {
		return 0, false
	}
	day, ok := r.num(2)
	if !ok || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false
	}
	var hour, minute, sec, nsec int
	if !r.byte('T') {
		r.spaces()
	}
	if !r.done() && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
		if hour, ok = r.num(2); !ok || !r.byte(':') {
			return 0, false
		}
		if minute, ok = r.num(2); !ok {
			return 0, false
		}
		if r.byte(':') {
			if sec, ok = r.num(2); !ok {
				return 0, false
			}
			if r.byte('.') {
				start := r.i
				frac, ok := r.num(9)
				if !ok {
					return 0, false
				}
				for k := r.i - start; k < 9; k++ {
					frac *= 10
				}
				nsec = frac
				for r.i < len(r.s) && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
					r.i++ // digits past nanoseconds
				}
			}
		}
		if hour > 23 || minute > 59 || sec > 60 {
			return 0, false
		}
		r.spaces()
	}
	offset, ok := parseZone(&r)
	if !ok || !r.done() {
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.UnixMilli() - int64(offset)*1000, true
}

// parseZone reads an optional zone and returns its offset east of UTC in
// seconds.
func parseZone(r *dateReader) (int, bool) {
	rest := r.s[r.i:]
	switch {
	case len(rest) == 0:
		return 0, true
	case string(rest) == "Z", string(rest) == "UTC", string(rest) == "GMT":
		r.i = len(r.s)
		return 0, true
	case rest[0] != '+' && rest[0] != '-':
		return 0, false
	}
	sign := 1
	if rest[0] == '-' {
		sign = -1
	}
	r.i++
	start := r.i
	hh, ok := r.num(2)
	if !ok || r.i-start != 2 {
		return 0, false
	}
	mm := 0
	colon := r.byte(':')
	if !r.done() {
		start = r.i
		if mm, ok = r.num(2); !ok || r.i-start != 2 {
			return 0, false
		}
	} else if colon {
		return 0, false
	}
	if hh > 23 || mm > 59 {
		return 0, false
	}
	return sign * (hh*3600 + mm*60), true
}

// daysIn returns the number of days of month in year.
func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

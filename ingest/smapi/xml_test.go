package smapi

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

func TestAppendTimeMatchesLayout(t *testing.T) {
	for _, sec := range []int64{0, 1, 59, 86399, 951782400, 1779033600, fixedNow.Unix(), 253402300799, -62135596800, 253402300800, -1} {
		want := time.Unix(sec, 0).UTC().Format(TimeLayout)
		if got := string(appendTime(nil, sec)); got != want {
			t.Errorf("appendTime(%d) = %q, want %q", sec, got, want)
		}
	}
}

func TestEscapeTail(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{`a<b>&"c"`, `a&lt;b&gt;&amp;"c"`},
		{"\x01x", "\uFFFDx"},
		{"&&", "&amp;&amp;"},
	} {
		got := string(escapeTail([]byte("pre:"+c.in), 4))
		if got != "pre:"+c.want {
			t.Errorf("escapeTail(%q) = %q, want %q", c.in, got, "pre:"+c.want)
		}
	}
}

func TestListAppKeysIsBounded(t *testing.T) {
	e := newEnv(t)
	app := e.snap.Services["svc-ids"].App("a1")
	app.Keys = nil
	for i := 0; i < 300; i++ {
		app.Keys = append(app.Keys, "key"+strconv.Itoa(i))
	}
	body := AppendStatus(nil, &Status{Authorized: true, App: app, ListAppKeys: true})
	if n := bytes.Count(body, []byte("<key id=")); n != MaxListedAppKeys {
		t.Fatalf("%d keys listed, want %d", n, MaxListedAppKeys)
	}
	if !bytes.Contains(body, []byte(`<key id="key255"/></app_keys>`)) {
		t.Fatalf("list does not end with the 256th key: %s", body[len(body)-80:])
	}
}

func TestParseUsageValue(t *testing.T) {
	for _, c := range []struct {
		in      string
		n       int64
		set, ok bool
	}{
		{"0", 0, false, true},
		{"42", 42, false, true},
		{"#7", 7, true, true},
		{"9223372036854775807", 1<<63 - 1, false, true},
		{"9223372036854775808", 0, false, false},
		{"", 0, false, false},
		{"#", 0, false, false},
		{"-1", 0, false, false},
		{"+1", 0, false, false},
		{" 1", 0, false, false},
		{"1.5", 0, false, false},
		{"##1", 0, false, false},
	} {
		n, set, ok := parseUsageValue([]byte(c.in))
		if n != c.n || set != c.set || ok != c.ok {
			t.Errorf("parseUsageValue(%q) = %d %v %v, want %d %v %v", c.in, n, set, ok, c.n, c.set, c.ok)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	at := func(y int, mo time.Month, d, h, mi, sec int) int64 {
		return time.Date(y, mo, d, h, mi, sec, 0, time.UTC).UnixMilli()
	}
	want := at(2026, 5, 15, 10, 0, 0)
	for _, c := range []struct {
		in string
		ms int64
		ok bool // false: unreadable, the report's time is used
	}{
		{"1778839200", want, true},
		{" 1778839200 ", want, true},
		{"2026-05-15 10:00:00 +0000", want, true},
		{"2026-05-15 12:00:00 +0200", want, true},
		{"2026-05-15 08:00:00 -02:00", want, true}, // the form 3scale's documentation shows
		{"2026-05-15 12:00:00 +02", want, true},
		{"2026-05-15 10:00:00 UTC", want, true},
		{"2026-05-15 10:00:00 GMT", want, true},
		{"2026-05-15 10:00:00", want, true},
		{"2026-05-15 10:00", want, true},
		{"2026-05-15T10:00:00Z", want, true},
		{"2026-05-15T10:00:00.250Z", want + 250, true},
		{"2026-05-15T11:00:00+01:00", want, true},
		{"2026/05/15", at(2026, 5, 15, 0, 0, 0), true},
		{"2026-05-15", at(2026, 5, 15, 0, 0, 0), true},
		{"2024-02-29 00:00:00", at(2024, 2, 29, 0, 0, 0), true},
		{"-5", -5000, true},                             // a time, far outside the window
		{"99999999999999", maxUnixSeconds * 1000, true}, // clamped, outside the window
		{"", 0, false},
		{"yesterday", 0, false},
		{"2012garbage2012", 0, false},
		{"2026-13-01 00:00:00 +0000", 0, false},
		{"2026-02-29", 0, false},
		{"2026-05-15 25:00:00", 0, false},
		{"2026-05-15 10:00:00 +0000 trailing", 0, false},
		{"2026-05-15 10:00:00 +", 0, false},
		{"2026-05-15 10:00:00 +02:", 0, false},
		{"2026-05/15", 0, false},
		{"+", 0, false},
	} {
		ms, ok := parseTimestamp([]byte(c.in))
		if ok != c.ok || (ok && ms != c.ms) {
			t.Errorf("parseTimestamp(%q) = %d %v, want %d %v", c.in, ms, ok, c.ms, c.ok)
		}
	}
}

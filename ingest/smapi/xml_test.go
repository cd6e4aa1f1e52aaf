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
	want := time.Date(2026, 5, 15, 10, 0, 0, 0, time.UTC).UnixMilli()
	for _, in := range []string{"1778839200", "2026-05-15 10:00:00 +0000", "2026-05-15 12:00:00 +0200", "2026-05-15 10:00:00 UTC", "2026-05-15 10:00:00", "2026-05-15T10:00:00Z", "2026-05-15T11:00:00+01:00"} {
		if got, ok := parseTimestamp([]byte(in)); !ok || got != want {
			t.Errorf("parseTimestamp(%q) = %d %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-5", "2026-13-01 00:00:00 +0000", "99999999999999"} {
		if _, ok := parseTimestamp([]byte(in)); ok {
			t.Errorf("parseTimestamp(%q) accepted", in)
		}
	}
}

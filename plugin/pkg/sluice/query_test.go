package sluice

import (
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

func TestGranularity(t *testing.T) {
	at := time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC)
	rng := func(d time.Duration) backend.TimeRange { return backend.TimeRange{From: at.Add(-d), To: at} }
	cases := []struct {
		name     string
		explicit string
		span     time.Duration
		interval time.Duration
		maxPts   int64
		want     string
	}{
		{"an hour of minutes", "", time.Hour, time.Minute, 1000, "minute"},
		{"interval above a minute", "", time.Hour, 5 * time.Minute, 1000, "hour"},
		{"a day fits 1,440 minutes but not 1,000 points", "", 24 * time.Hour, time.Second, 1000, "hour"},
		{"a day in 1,500 points", "auto", 24 * time.Hour, time.Second, 2000, "minute"},
		{"the API's 1,500 buckets win over more points", "", 26 * time.Hour, time.Second, 5000, "hour"},
		{"90 days of hours are too many points", "", 90 * 24 * time.Hour, time.Hour, 1000, "day"},
		{"two years in 300 points", "", 730 * 24 * time.Hour, time.Hour, 300, "week"},
		{"two years", "", 730 * 24 * time.Hour, 12 * time.Hour, 50, "month"},
		{"no max data points", "", 30 * 24 * time.Hour, time.Hour, 0, "hour"},
		{"two centuries", "", 200 * 365 * 24 * time.Hour, time.Hour, 1000, "month"},
		{"explicit wins", "day", time.Hour, time.Minute, 1000, "day"},
	}
	for _, c := range cases {
		if got := Granularity(c.explicit, rng(c.span), c.interval, c.maxPts); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestParseSettings(t *testing.T) {
	cases := []struct {
		name, json, instURL, token string
		wantURL                    string
		wantTimeout                time.Duration
		wantErr                    string
	}{
		{"json url", `{"url":"http://q:3002/"}`, "", "t", "http://q:3002", 30 * time.Second, ""},
		{"instance url", `{}`, " https://q.example ", "t", "https://q.example", 30 * time.Second, ""},
		{"timeout", `{"url":"http://q:3002","timeoutSeconds":5}`, "", "t", "http://q:3002", 5 * time.Second, ""},
		{"timeout out of range", `{"url":"http://q:3002","timeoutSeconds":100000}`, "", "t", "http://q:3002", 30 * time.Second, ""},
		{"no url", `{}`, "", "t", "", 30 * time.Second, "URL is not set"},
		{"not http", `{"url":"ftp://q"}`, "", "t", "ftp://q", 30 * time.Second, "not an http"},
		{"no token", `{"url":"http://q:3002"}`, "", "", "http://q:3002", 30 * time.Second, "no token"},
	}
	for _, c := range cases {
		s, err := ParseSettings([]byte(c.json), c.instURL, map[string]string{"token": c.token})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		err = s.check()
		if s.URL != c.wantURL || s.Timeout != c.wantTimeout || (err == nil) != (c.wantErr == "") || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: %+v, %v", c.name, s, err)
		}
	}
	if _, err := ParseSettings([]byte(`{"url":`), "", nil); err == nil {
		t.Error("broken jsonData accepted")
	}
}

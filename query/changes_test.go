package query

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
)

func mustJSONT(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChangeFeed(t *testing.T) {
	log := configlog.NewMemLog()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app := func(id, plan, state string) configlog.Record {
		return configlog.Record{Key: configlog.AppKey("t1", "s1", id), Value: mustJSONT(t, catalog.AppSpec{ID: id, Plan: plan, State: state})}
	}
	plan := func(id string, max int64) configlog.Record {
		return configlog.Record{Key: configlog.PlanKey("t1", "s1", id), Value: mustJSONT(t, catalog.PlanSpec{ID: id,
			Limits: []catalog.LimitSpec{{Metric: "hits", Period: "month", Max: max}}})}
	}
	// Already in the log when the feed starts, undated: starting state.
	if _, err := log.Append(ctx, []configlog.Record{plan("basic", 10), plan("pro", 100), app("a1", "basic", ""), app("a2", "basic", "")}); err != nil {
		t.Fatal(err)
	}
	feed := NewChangeFeed()
	clock := time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC)
	feed.now = func() time.Time { return clock }
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx, log) }()
	// Appends after the feed has read the starting state are changes.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		feed.mu.Lock()
		n := len(feed.apps)
		feed.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the feed did not read the starting state")
		}
	}

	steps := []struct {
		recs []configlog.Record
		want []string // kind app plan
	}{
		{[]configlog.Record{app("a1", "pro", "")}, []string{"plan_changed a1 pro"}},
		{[]configlog.Record{app("a2", "basic", "suspended")}, []string{"app_suspended a2 basic"}},
		{[]configlog.Record{plan("pro", 200)}, []string{"limits_edited  pro"}},
		{[]configlog.Record{plan("pro", 200)}, nil}, // the same limits again: no change
		{[]configlog.Record{app("a2", "pro", "")}, []string{"plan_changed a2 pro", "app_resumed a2 pro"}},
		{[]configlog.Record{{Key: configlog.AppKey("t2", "s2", "a1"), Value: mustJSONT(t, catalog.AppSpec{ID: "a1", Plan: "x"})}}, nil}, // t2's
		{[]configlog.Record{app("a3", "basic", "")}, []string{"app_created a3 basic"}},
		{[]configlog.Record{{Key: configlog.AppKey("t1", "s1", "a3")}}, []string{"app_deleted a3 basic"}},
	}
	var all []string
	for i, st := range steps {
		clock = clock.Add(time.Minute)
		if _, err := log.Append(ctx, st.recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, st.want...)
		// Wait for the feed to read it: t2's app, then t1's count.
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := feed.query("t1", "s1", "", time.Time{}, clock.Add(time.Hour), MaxLimit)
			if len(got) == len(all) || time.Now().After(deadline) {
				var s []string
				for _, c := range got {
					s = append(s, c.Kind+" "+c.AppID+" "+c.PlanID)
				}
				if fmt.Sprint(s) != fmt.Sprint(all) {
					t.Fatalf("after step %d:\n got %q\nwant %q", i, s, all)
				}
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Times, ranges, filters, limit.
	first := time.Date(2026, 11, 18, 10, 1, 0, 0, time.UTC)
	if got := feed.query("t1", "s1", "", first, first.Add(time.Minute), 100); len(got) != 1 || got[0].Kind != "plan_changed" || !got[0].Time.Equal(first) {
		t.Errorf("one minute: %+v", got)
	}
	if got := feed.query("t1", "s1", "a2", time.Time{}, first.Add(time.Hour), 100); len(got) != 3 {
		t.Errorf("a2: %+v", got)
	}
	if got := feed.query("t1", "s1", "", time.Time{}, first.Add(time.Hour), 2); len(got) != 2 || got[1].Kind != "app_deleted" {
		t.Errorf("latest two: %+v", got)
	}
	if got := feed.query("t2", "s2", "", time.Time{}, first.Add(time.Hour), 100); len(got) != 1 || got[0].Kind != "app_created" {
		t.Errorf("t2: %+v", got)
	}
	if got := feed.query("t1", "s2", "", time.Time{}, first.Add(time.Hour), 100); len(got) != 0 {
		t.Errorf("t1 sees t2's service: %+v", got)
	}
	log.Close()
	if err := <-done; err != configlog.ErrClosed {
		t.Errorf("Run: %v", err)
	}
}

func TestChangeFeedDatedAndBounded(t *testing.T) {
	feed := NewChangeFeed()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := configlog.AppKey("t1", "s1", "a1")
	const n = 2*MaxChangesPerTenant + 50 // past the point where the ring is trimmed
	for i := 0; i < n; i++ {
		st := ""
		if i%2 == 1 {
			st = "suspended"
		}
		v, _ := json.Marshal(catalog.AppSpec{ID: "a1", Plan: "p", State: st})
		// Dated records (the Kafka log) count even during catch-up; one
		// arrives out of order and is kept in time order.
		at := base.Add(time.Duration(i) * time.Second)
		if i == 10 {
			at = base.Add(-time.Hour)
		}
		feed.observe(configlog.Entry{Record: configlog.Record{Key: key, Value: v}, Time: at}, true)
	}
	got := feed.query("t1", "s1", "", time.Time{}, base.Add(24*time.Hour), MaxLimit)
	if len(got) != MaxLimit {
		t.Fatalf("%d changes", len(got))
	}
	all := feed.query("t1", "s1", "", time.Time{}, base.Add(24*time.Hour), 1<<30)
	if len(all) != MaxChangesPerTenant {
		t.Errorf("kept %d, want %d", len(all), MaxChangesPerTenant)
	}
	if first := base.Add(time.Duration(n-MaxChangesPerTenant) * time.Second); !all[0].Time.Equal(first) {
		t.Errorf("oldest kept %v, want %v (the latest %d)", all[0].Time, first, MaxChangesPerTenant)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Fatalf("out of order at %d", i)
		}
	}
}

func TestChangesEndpoint(t *testing.T) {
	snap, err := catalog.Build(testDocument(), nil)
	if err != nil {
		t.Fatal(err)
	}
	feed := NewChangeFeed()
	at := time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC)
	for i, st := range []string{"", "suspended"} {
		v, _ := json.Marshal(catalog.AppSpec{ID: "app1", Plan: "basic", State: st})
		feed.observe(configlog.Entry{Record: configlog.Record{Key: configlog.AppKey("t1", "s1", "app1"), Value: v}, Time: at.Add(time.Duration(i) * time.Minute)}, false)
	}
	srv, err := New(Options{Catalog: catalog.NewStore(snap), Conn: downConn{}, Database: testDB, Logger: quietLog(), Changes: feed,
		Now: func() time.Time { return at.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, srv)
	code, body, _ := get(t, base, t1Query, "/api/v1/changes?service_id=s1")
	var ans struct {
		Changes []struct {
			Time, Kind, Text string
			AppID            string `json:"app_id"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if len(ans.Changes) != 2 || ans.Changes[0].Kind != "app_created" || ans.Changes[1].Kind != "app_suspended" ||
		ans.Changes[1].Time != "2026-11-18T10:01:00Z" || ans.Changes[1].AppID != "app1" {
		t.Errorf("%s", body)
	}
	for _, c := range []struct {
		name, token, q string
		status         int
		code           string
	}{
		{"other tenant", t2Query, "service_id=s1", 403, "forbidden_service"},
		{"no service", t1Query, "", 400, "missing_service_id"},
		{"bad limit", t1Query, "service_id=s1&limit=0", 400, "invalid_limit"},
		{"bad from", t1Query, "service_id=s1&from=yesterday", 400, "invalid_from"},
		{"bad app", t1Query, "service_id=s1&app_id=", 400, "invalid_app_id"},
	} {
		code, body, _ := get(t, base, c.token, "/api/v1/changes?"+c.q)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(body, &e)
		if code != c.status || e.Error.Code != c.code {
			t.Errorf("%s: got %d %s, want %d %s", c.name, code, body, c.status, c.code)
		}
	}
	// Without a feed: 503 changes_unavailable.
	srv.changeFeed = nil
	if code, body, _ := get(t, base, t1Query, "/api/v1/changes?service_id=s1"); code != 503 {
		t.Errorf("no feed: %d %s", code, body)
	}
}

func TestChangeTextBound(t *testing.T) {
	feed := NewChangeFeed()
	long := strings.Repeat("é", 120) // 240 bytes
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, plan := range []string{"p" + long, "q" + long} {
		v, _ := json.Marshal(catalog.AppSpec{ID: long, Plan: plan})
		feed.observe(configlog.Entry{Record: configlog.Record{Key: configlog.AppKey("t1", "s1", long), Value: v}, Time: at.Add(time.Duration(i) * time.Second)}, false)
	}
	var ls []catalog.LimitSpec
	for i := 0; i < 256; i++ {
		ls = append(ls, catalog.LimitSpec{Metric: "metric" + strconv.Itoa(i), Period: "month", Max: 1 << 40})
	}
	for i, max := range []int64{1, 2} {
		ls[0].Max = max
		v, _ := json.Marshal(catalog.PlanSpec{ID: "p", Limits: ls})
		feed.observe(configlog.Entry{Record: configlog.Record{Key: configlog.PlanKey("t1", "s1", "p"), Value: v}, Time: at.Add(time.Duration(10+i) * time.Second)}, false)
	}
	got := feed.query("t1", "s1", "", time.Time{}, at.Add(time.Hour), 100)
	if len(got) != 3 || got[1].Kind != ChangePlanChanged || got[2].Kind != ChangeLimitsEdited {
		t.Fatalf("%d changes: %+v", len(got), got)
	}
	for _, c := range got[1:] {
		if len(c.Text) > maxChangeText || !utf8.ValidString(c.Text) || !strings.HasSuffix(c.Text, "...") {
			t.Errorf("%s: %d bytes, valid %v: %q", c.Kind, len(c.Text), utf8.ValidString(c.Text), c.Text)
		}
	}
}

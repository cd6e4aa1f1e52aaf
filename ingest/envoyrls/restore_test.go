package envoyrls

import (
	"testing"
	"time"

	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

func TestRestore(t *testing.T) {
	h := newHarness(t, Options{Tenant: "gw"})
	h.load(t, "testdata/semantics")
	minute := start0.Truncate(time.Minute)
	hour := start0.Truncate(time.Hour)
	sum := func(svc, app, metric string, u limiter.Unit, start time.Time, n int64) chschema.WindowSum {
		return chschema.WindowSum{Unit: u, Start: start, Tenant: "gw", Service: svc, App: app, Metric: metric, Sum: n}
	}
	sums := []chschema.WindowSum{
		sum("sem", "alice", "user", limiter.Minute, minute, 4),
		sum("sem", "u1", "tier_free.user", limiter.Minute, minute, 3),
		sum("sem", "~", "tier_free", limiter.Hour, hour, 1),
		sum("sem", "%2Fapi%2Fx", "path_:2Fapi:2F:2A", limiter.Minute, minute, 2),
		sum("sem", "a%20b", "user", limiter.Minute, minute, 5),
		// Skipped: wrong unit, unknown domain, a cut id, too many values,
		// a metric no rule has.
		sum("sem", "bob", "user", limiter.Hour, hour, 5),
		sum("nope", "bob", "user", limiter.Minute, minute, 5),
		sum("sem", "abc~0123456789abcdef", "user", limiter.Minute, minute, 5),
		sum("sem", "a/b", "user", limiter.Minute, minute, 5),
		sum("sem", "bob", "nothing", limiter.Minute, minute, 5),
		// Another tenant's: not ours, not counted.
		{Unit: limiter.Minute, Start: minute, Tenant: "other", Service: "sem", App: "carol", Metric: "user", Sum: 5},
	}
	seeded, skipped := h.svc.Restore(sums, h.clock.Now())
	if seeded != 5 || skipped != 5 {
		t.Fatalf("seeded %d skipped %d, want 5 and 5", seeded, skipped)
	}
	tests := []struct {
		name string
		req  *rlpb.RateLimitRequest
		want *rlpb.RateLimitResponse_DescriptorStatus
	}{
		{"key alone", one("sem", "user", "alice"), dstatus(ok, 5, perMin, 0, 60)},
		{"escaped value", one("sem", "user", "a b"), dstatus(over, 5, perMin, 0, 60)},
		{"nested", request("sem", [][][2]string{{{"tier", "free"}, {"user", "u1"}}}, 0), dstatus(ok, 4, perMin, 0, 60)},
		{"fixed only", one("sem", "tier", "free"), dstatus(ok, 2, perHour, 0, 45*60)},
		{"wildcard", one("sem", "path", "/api/x"), dstatus(ok, 3, perMin, 0, 60)},
		{"skipped: starts empty", one("sem", "user", "bob"), dstatus(ok, 5, perMin, 4, 60)},
		{"another tenant's: starts empty", one("sem", "user", "carol"), dstatus(ok, 5, perMin, 4, 60)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := h.call(t, tc.req)
			wantResp(t, tc.name, got, &rlpb.RateLimitResponse{OverallCode: tc.want.Code, Statuses: st(tc.want)})
		})
	}
}

func TestRestoreSharedThreshold(t *testing.T) {
	h := newHarness(t, Options{})
	h.load(t, "testdata/integration")
	hour := start0.Truncate(time.Hour)
	sums := []chschema.WindowSum{
		{Unit: limiter.Hour, Start: hour, Tenant: "envoy", Service: "share-threshold-test", App: "files%2F*", Metric: MetricName("files_files/*"), Sum: 9},
		// The id of a shared wildcard is its pattern, nothing else.
		{Unit: limiter.Hour, Start: hour, Tenant: "envoy", Service: "share-threshold-test", App: "files%2Fa.pdf", Metric: MetricName("files_files/*"), Sum: 9},
	}
	if seeded, skipped := h.svc.Restore(sums, h.clock.Now()); seeded != 1 || skipped != 1 {
		t.Fatalf("seeded %d skipped %d, want 1 and 1", seeded, skipped)
	}
	wantResp(t, "files/b.csv", h.call(t, request("share-threshold-test", [][][2]string{{{"files", "files/b.csv"}}}, 1)),
		&rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 10, perHour, 0, 45*60))})
}

func TestUnescape(t *testing.T) {
	for _, v := range []string{"", "plain", "a/b c%~\n\xff", "%41"} {
		got, ok := unescape(string(appendEscaped(nil, v)))
		if !ok || got != v {
			t.Errorf("unescape(escape(%q)) = %q, %v", v, got, ok)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz", "a%4"} {
		if _, ok := unescape(bad); ok {
			t.Errorf("unescape(%q) accepted", bad)
		}
	}
}

func TestApplyRemote(t *testing.T) {
	h := newHarness(t, Options{Tenant: "gw"})
	h.load(t, "testdata/semantics")
	ts := start0.UnixMilli()
	ev := func(kind event.Kind, tenant, svc, app, metric string, v int64, at int64) *event.Event {
		e := &event.Event{Kind: kind, TS: at, Received: at, TenantID: tenant, ServiceID: svc, AppID: app}
		if metric != "" {
			e.Usage = []event.Usage{{Metric: metric, Value: v}}
		}
		return e
	}
	tests := []struct {
		name string
		ev   *event.Event
		want bool
	}{
		{"authrep", ev(event.KindAuthrep, "gw", "sem", "alice", "user", 3, ts), true},
		{"nested", ev(event.KindAuthrep, "gw", "sem", "u1", "tier_free.user", 3, ts), true},
		{"unlimited", ev(event.KindAuthrep, "gw", "sem", "~", "user_vip", 3, ts), true},
		{"an earlier window: ignored by the limiter", ev(event.KindAuthrep, "gw", "sem", "dave", "user", 5, ts-120_000), true},
		{"denied", ev(event.KindDenied, "gw", "sem", "bob", "", 0, ts), false},
		{"another tenant", ev(event.KindAuthrep, "acme", "sem", "bob", "user", 5, ts), false},
		{"unknown domain", ev(event.KindAuthrep, "gw", "nope", "bob", "user", 5, ts), false},
		{"unknown metric", ev(event.KindAuthrep, "gw", "sem", "bob", "nothing", 5, ts), false},
		{"id of no values", ev(event.KindAuthrep, "gw", "sem", "a/b", "user", 5, ts), false},
	}
	for _, tc := range tests {
		if got := h.svc.ApplyRemote(tc.ev); got != tc.want {
			t.Errorf("%s: ApplyRemote = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, c := range []struct {
		name string
		req  *rlpb.RateLimitRequest
		want *rlpb.RateLimitResponse_DescriptorStatus
	}{
		{"alice: 3 remote + 1", one("sem", "user", "alice"), dstatus(ok, 5, perMin, 1, 60)},
		{"nested: 3 remote + 1", request("sem", [][][2]string{{{"tier", "free"}, {"user", "u1"}}}, 0), dstatus(ok, 4, perMin, 0, 60)},
		{"dave: the old window's usage does not count", one("sem", "user", "dave"), dstatus(ok, 5, perMin, 4, 60)},
		{"bob: nothing applied", one("sem", "user", "bob"), dstatus(ok, 5, perMin, 4, 60)},
	} {
		wantResp(t, c.name, h.call(t, c.req), &rlpb.RateLimitResponse{OverallCode: c.want.Code, Statuses: st(c.want)})
	}
}

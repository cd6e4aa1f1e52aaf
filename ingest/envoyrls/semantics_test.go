package envoyrls

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/ingest/event"
)

// step is one call and its expected answer; advance moves the clock first.
type step struct {
	advance time.Duration
	req     *rlpb.RateLimitRequest
	overall rlpb.RateLimitResponse_Code
	want    []*rlpb.RateLimitResponse_DescriptorStatus
}

func one(dom, k, v string) *rlpb.RateLimitRequest { return request(dom, [][][2]string{{{k, v}}}, 0) }

func withHits(r *rlpb.RateLimitRequest, perDescriptor ...*wrapperspb.UInt64Value) *rlpb.RateLimitRequest {
	for i, h := range perDescriptor {
		r.Descriptors[i].HitsAddend = h
	}
	return r
}

func st(s ...*rlpb.RateLimitResponse_DescriptorStatus) []*rlpb.RateLimitResponse_DescriptorStatus {
	return s
}

func named(name string, s *rlpb.RateLimitResponse_DescriptorStatus) *rlpb.RateLimitResponse_DescriptorStatus {
	s.CurrentLimit.Name = name
	return s
}

var unlimitedStatus = &rlpb.RateLimitResponse_DescriptorStatus{Code: ok, LimitRemaining: math.MaxUint32}

// The clock starts at 00:15:00 UTC on 10 March: a minute window has 60 s
// left, an hour 45 min, the month 21 days 23 h 45 min.
const monthLeft = 21*86400 + 85500

func TestSemantics(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"key alone: a counter per value", []step{
			{req: one("sem", "user", "alice"), overall: ok, want: st(dstatus(ok, 5, perMin, 4, 60))},
			{req: request("sem", [][][2]string{{{"user", "alice"}}}, 4), overall: ok, want: st(dstatus(ok, 5, perMin, 0, 60))},
			{req: one("sem", "user", "alice"), overall: over, want: st(dstatus(over, 5, perMin, 0, 60))},
			{req: one("sem", "user", "bob"), overall: ok, want: st(dstatus(ok, 5, perMin, 4, 60))},
			{advance: time.Minute, req: one("sem", "user", "alice"), overall: ok, want: st(dstatus(ok, 5, perMin, 4, 60))},
		}},
		{"exact value wins over the key: unlimited", []step{
			{req: request("sem", [][][2]string{{{"user", "vip"}}}, 1000), overall: ok, want: st(unlimitedStatus)},
			{req: request("sem", [][][2]string{{{"user", "vip"}}}, 1000), overall: ok, want: st(unlimitedStatus)},
		}},
		{"exact wins over wildcard, wildcard over nothing", []step{
			{req: one("sem", "path", "/api/admin"), overall: ok, want: st(dstatus(ok, 1, perMin, 0, 60))},
			{req: one("sem", "path", "/api/admin"), overall: over, want: st(dstatus(over, 1, perMin, 0, 60))},
			{req: one("sem", "path", "/api/x"), overall: ok, want: st(dstatus(ok, 3, perMin, 2, 60))},
			{req: one("sem", "path", "/api/y"), overall: ok, want: st(dstatus(ok, 3, perMin, 2, 60))},
			{req: one("sem", "path", "/other"), overall: ok, want: st(okStatus())},
		}},
		{"nested descriptors: the limit of the last entry", []step{
			{req: one("sem", "tier", "free"), overall: ok, want: st(dstatus(ok, 2, perHour, 1, 45*60))},
			{req: request("sem", [][][2]string{{{"tier", "free"}, {"user", "a"}}}, 0), overall: ok, want: st(dstatus(ok, 4, perMin, 3, 60))},
			{req: request("sem", [][][2]string{{{"tier", "paid"}, {"user", "a"}}}, 0), overall: ok, want: st(okStatus())},
			{req: request("sem", [][][2]string{{{"tier", "free"}, {"user", "a"}, {"extra", "z"}}}, 0), overall: ok, want: st(okStatus())},
			{req: request("sem", [][][2]string{{{"user", "a"}, {"tier", "free"}}}, 0), overall: ok, want: st(okStatus())},
		}},
		{"hits_addend: refused hits are not counted", []step{
			{req: request("sem", [][][2]string{{{"user", "carol"}}}, 3), overall: ok, want: st(dstatus(ok, 5, perMin, 2, 60))},
			{req: request("sem", [][][2]string{{{"user", "carol"}}}, 3), overall: over, want: st(dstatus(over, 5, perMin, 0, 60))},
			{req: request("sem", [][][2]string{{{"user", "carol"}}}, 2), overall: ok, want: st(dstatus(ok, 5, perMin, 0, 60))},
		}},
		{"per-descriptor hits_addend overrides the request's, zero included", []step{
			{req: withHits(request("sem", [][][2]string{{{"user", "dan"}}, {{"user", "eve"}}}, 2), wrapperspb.UInt64(0), nil),
				overall: ok, want: st(dstatus(ok, 5, perMin, 5, 60), dstatus(ok, 5, perMin, 3, 60))},
			{req: withHits(request("sem", [][][2]string{{{"user", "dan"}}}, 1), wrapperspb.UInt64(5)),
				overall: ok, want: st(dstatus(ok, 5, perMin, 0, 60))},
		}},
		{"shadow mode: counted, never refused", []step{
			{req: one("sem", "shadowed", "x"), overall: ok, want: st(dstatus(ok, 1, perMin, 0, 60))},
			{req: one("sem", "shadowed", "x"), overall: ok, want: st(dstatus(ok, 1, perMin, 0, 60))},
		}},
		{"replaces: the named limit does not apply", []step{
			{req: request("sem", [][][2]string{{{"global", "a"}}, {{"special", "a"}}}, 0), overall: ok,
				want: st(okStatus(), dstatus(ok, 2, perMin, 1, 60))},
			{req: one("sem", "global", "a"), overall: ok, want: st(named("global", dstatus(ok, 100, perMin, 99, 60)))},
		}},
		// A sliding window's reset is when its oldest usage leaves it: W
		// after that usage, plus at most one sub-bucket (ceil(10s/7) = 2 s
		// in whole seconds), so the expected resets are ranges.
		{"sliding window", []step{
			{req: one("sem", "slide", "a"), overall: ok, want: st(dstatus(ok, 2, perMin, 1, -10))},
			{advance: 3 * time.Second, req: one("sem", "slide", "a"), overall: ok, want: st(dstatus(ok, 2, perMin, 0, -7))},
			{advance: 3 * time.Second, req: one("sem", "slide", "a"), overall: over, want: st(dstatus(over, 2, perMin, 0, -4))},
			{advance: 12 * time.Second, req: one("sem", "slide", "a"), overall: ok, want: st(dstatus(ok, 2, perMin, 1, -10))},
		}},
		{"quota mode: over only when every quota descriptor is", []step{
			{req: request("sem", [][][2]string{{{"q1", "a"}}, {{"q2", "a"}}}, 0), overall: ok,
				want: st(dstatus(ok, 1, perMin, 0, 60), dstatus(ok, 2, perMin, 1, 60))},
			{req: request("sem", [][][2]string{{{"q1", "a"}}, {{"q2", "a"}}}, 0), overall: ok,
				want: st(dstatus(over, 1, perMin, 0, 60), dstatus(ok, 2, perMin, 0, 60))},
			{req: request("sem", [][][2]string{{{"q1", "a"}}, {{"q2", "a"}}}, 0), overall: over,
				want: st(dstatus(over, 1, perMin, 0, 60), dstatus(over, 2, perMin, 0, 60))},
		}},
		{"calendar month", []step{
			{req: one("sem", "monthly", "a"), overall: ok, want: st(dstatus(ok, 3, perMonth, 2, monthLeft))},
		}},
		{"overall is over when one descriptor is", []step{
			{req: request("sem", [][][2]string{{{"path", "/api/admin"}}, {{"user", "zed"}}}, 0), overall: ok,
				want: st(dstatus(ok, 1, perMin, 0, 60), dstatus(ok, 5, perMin, 4, 60))},
			{req: request("sem", [][][2]string{{{"path", "/api/admin"}}, {{"user", "zed"}}}, 0), overall: over,
				want: st(dstatus(over, 1, perMin, 0, 60), dstatus(ok, 5, perMin, 3, 60))},
		}},
		{"a descriptor without entries limits nothing", []step{
			{req: &rlpb.RateLimitRequest{Domain: "sem", Descriptors: []*ratelimitv3.RateLimitDescriptor{{}}}, overall: ok, want: st(okStatus())},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.load(t, "testdata/semantics")
			for i, s := range tc.steps {
				h.clock.Advance(s.advance)
				got := h.call(t, s.req)
				for j, w := range s.want {
					// A negative reset -r means "from r to r+2 seconds".
					if r := w.GetDurationUntilReset().GetSeconds(); r < 0 && j < len(got.Statuses) {
						g := got.Statuses[j].GetDurationUntilReset().GetSeconds()
						if g < -r || g > -r+2 {
							t.Fatalf("step %d descriptor %d: reset %d s, want %d to %d", i, j, g, -r, -r+2)
						}
						w.DurationUntilReset.Seconds = g
					}
				}
				wantResp(t, "step "+string(rune('0'+i)), got, &rlpb.RateLimitResponse{OverallCode: s.overall, Statuses: s.want})
			}
		})
	}
}

func TestShadowModeMetric(t *testing.T) {
	h := newHarness(t, Options{})
	h.load(t, "testdata/semantics")
	for range 3 {
		h.call(t, one("sem", "shadowed", "x"))
	}
	if got := h.metric(t, `sluice_envoy_shadow_over_limit_total{domain="sem"}`); got != 2 {
		t.Fatalf("shadow over-limit = %v, want 2", got)
	}
	if got := h.metric(t, `sluice_envoy_over_limit_total{domain="sem"}`); got != 0 {
		t.Fatalf("over-limit calls = %v, want 0 (shadow mode never refuses)", got)
	}
	// Shadow-mode hits are usage: three authrep events with one hit each.
	evs := h.sink.Events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for _, e := range evs {
		if e.Kind != event.KindAuthrep || len(e.Usage) != 1 || e.Usage[0].Value != 1 {
			t.Fatalf("event %+v, want an authrep of one hit", e)
		}
	}
}

func TestHeaders(t *testing.T) {
	h := newHarness(t, Options{Headers: true})
	h.load(t, "testdata/semantics")
	hdr := func(limit, remaining, reset string) []*corepb.HeaderValue {
		return []*corepb.HeaderValue{{Key: "x-ratelimit-limit", Value: limit}, {Key: "x-ratelimit-remaining", Value: remaining}, {Key: "x-ratelimit-reset", Value: reset}}
	}
	tests := []struct {
		name string
		req  *rlpb.RateLimitRequest
		want []*corepb.HeaderValue
	}{
		{"the descriptor closest to its limit", request("sem", [][][2]string{{{"user", "h"}}, {{"tier", "free"}}}, 0), hdr("2", "1", "2700")},
		{"the over-limit descriptor", request("sem", [][][2]string{{{"tier", "free"}}, {{"tier", "free"}}, {{"user", "h"}}}, 0), hdr("2", "0", "2700")},
		{"no limit, no headers", one("sem", "nothing", "x"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := h.call(t, tc.req).ResponseHeadersToAdd
			if len(got) != len(tc.want) {
				t.Fatalf("headers %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].Key != tc.want[i].Key || got[i].Value != tc.want[i].Value {
					t.Fatalf("headers %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	h := newHarness(t, Options{})
	h.load(t, "testdata/semantics")
	many := func(n int) *rlpb.RateLimitRequest {
		r := &rlpb.RateLimitRequest{Domain: "sem"}
		for range n {
			r.Descriptors = append(r.Descriptors, &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "x"}}})
		}
		return r
	}
	longEntries := &rlpb.RateLimitRequest{Domain: "sem", Descriptors: []*ratelimitv3.RateLimitDescriptor{{}}}
	for range MaxEntries + 1 {
		longEntries.Descriptors[0].Entries = append(longEntries.Descriptors[0].Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: "k", Value: "v"})
	}
	override := one("sem", "user", "x")
	override.Descriptors[0].Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_SECOND}
	negative := one("sem", "user", "x")
	negative.Descriptors[0].IsNegativeHits = true
	tests := []struct {
		name string
		req  *rlpb.RateLimitRequest
		msg  string
	}{
		{"empty domain", request("", [][][2]string{{{"user", "x"}}}, 0), "domain must not be empty"},
		{"long domain", request(strings.Repeat("d", MaxKeyBytes+1), [][][2]string{{{"user", "x"}}}, 0), "domain longer"},
		{"no descriptors", &rlpb.RateLimitRequest{Domain: "sem"}, "descriptor list must not be empty"},
		{"too many descriptors", many(MaxDescriptors + 1), "more than 64 descriptors"},
		{"too many entries", longEntries, "more than 16 entries"},
		{"long key", one("sem", strings.Repeat("k", MaxKeyBytes+1), "x"), "key longer"},
		{"long value", one("sem", "user", strings.Repeat("v", MaxValueBytes+1)), "value longer"},
		{"limit override", override, "overrides are not supported"},
		{"negative hits", negative, "negative hits"},
		{"hits_addend past int64", withHits(one("sem", "user", "x"), wrapperspb.UInt64(math.MaxInt64+1)), "hits_addend larger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.ShouldRateLimit(context.Background(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("error %v, want InvalidArgument containing %q", err, tc.msg)
			}
		})
	}
	// The largest hits_addend that is allowed is counted, never wrapped.
	r := withHits(one("sem", "user", "big"), wrapperspb.UInt64(math.MaxInt64))
	wantResp(t, "huge hits_addend", h.call(t, r), &rlpb.RateLimitResponse{OverallCode: over, Statuses: st(dstatus(over, 5, perMin, 0, 60))})
	wantResp(t, "after it", h.call(t, one("sem", "user", "big")), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 5, perMin, 4, 60))})
}

func TestNoConfigIsUnavailable(t *testing.T) {
	h := newHarness(t, Options{})
	_, err := h.client.ShouldRateLimit(context.Background(), one("sem", "user", "x"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("error %v, want Unavailable", err)
	}
}

// refusingSink refuses every event, like a full spool with the refuse policy.
type refusingSink struct{}

func (refusingSink) Append(*event.Event) error { return errFull }
func (refusingSink) Accepting() bool           { return false }

var errFull = status.Error(codes.ResourceExhausted, "full")

func TestSinkRefusesIsUnavailable(t *testing.T) {
	h := newHarness(t, Options{Sink: refusingSink{}})
	h.load(t, "testdata/semantics")
	_, err := h.client.ShouldRateLimit(context.Background(), one("sem", "user", "x"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("error %v, want Unavailable", err)
	}
}

func TestEvents(t *testing.T) {
	h := newHarness(t, Options{Tenant: "gw", Region: "eu", Node: "n1"})
	h.load(t, "testdata/semantics")
	h.call(t, request("sem", [][][2]string{{{"user", "a b/c"}}}, 5))
	h.call(t, one("sem", "user", "a b/c"))
	h.call(t, request("sem", [][][2]string{{{"tier", "free"}, {"user", "u1"}}}, 2))
	h.call(t, one("sem", "path", "/api/admin"))
	h.call(t, one("sem", "user", "vip"))
	h.call(t, one("sem", "nothing", "x")) // no limit: no event
	type ev struct {
		kind          event.Kind
		app, metric   string
		value         int64
		reason        string
		tenant, svc   string
		region, nodeN string
	}
	want := []ev{
		{event.KindAuthrep, "a%20b%2Fc", "user", 5, "", "gw", "sem", "eu", "n1"},
		{event.KindDenied, "a%20b%2Fc", "", 0, "limits_exceeded", "gw", "sem", "eu", "n1"},
		{event.KindAuthrep, "u1", "tier_free.user", 2, "", "gw", "sem", "eu", "n1"},
		{event.KindAuthrep, "~", "path_:2Fapi:2Fadmin", 1, "", "gw", "sem", "eu", "n1"},
		{event.KindAuthrep, "~", "user_vip", 1, "", "gw", "sem", "eu", "n1"},
	}
	got := h.sink.Events()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		g := ev{kind: e.Kind, app: e.AppID, reason: e.Reason, tenant: e.TenantID, svc: e.ServiceID, region: e.Region, nodeN: e.Node}
		if len(e.Usage) == 1 {
			g.metric, g.value = e.Usage[0].Metric, e.Usage[0].Value
		}
		if g != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, g, want[i])
		}
		if e.TS != start0.UnixMilli() {
			t.Errorf("event %d at %d, want %d", i, e.TS, start0.UnixMilli())
		}
	}
}

func TestValuesCapAndSweep(t *testing.T) {
	h := newHarness(t, Options{MaxValues: 3})
	h.load(t, "testdata/semantics")
	for _, u := range []string{"a", "b", "c"} {
		wantResp(t, u, h.call(t, one("sem", "user", u)), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 5, perMin, 4, 60))})
	}
	// Past the cap, new values share one counter set per rate limit.
	wantResp(t, "d", h.call(t, request("sem", [][][2]string{{{"user", "d"}}}, 5)), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 5, perMin, 0, 60))})
	wantResp(t, "e", h.call(t, one("sem", "user", "e")), &rlpb.RateLimitResponse{OverallCode: over, Statuses: st(dstatus(over, 5, perMin, 0, 60))})
	// Values already active keep their own.
	wantResp(t, "a again", h.call(t, one("sem", "user", "a")), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 5, perMin, 3, 60))})
	if got := h.metric(t, `sluice_envoy_active_values{domain="sem"}`); got != 4 {
		t.Fatalf("active values %v, want 4 (3 and the overflow set)", got)
	}
	if got := h.metric(t, `sluice_envoy_values_overflow_total{domain="sem"}`); got != 2 {
		t.Fatalf("overflowed calls %v, want 2", got)
	}
	if evs := h.sink.Events(); evs[3].AppID != overflowApp {
		t.Fatalf("overflow event app %q, want %q", evs[3].AppID, overflowApp)
	}
	h.svc.Sweep()
	if got := h.metric(t, `sluice_envoy_active_values{domain="sem"}`); got != 4 {
		t.Fatalf("active values after a sweep in the open window %v, want 4", got)
	}
	// Once the minute is over every value is dropped, and a new one gets
	// its own counter set again.
	h.clock.Advance(time.Minute)
	h.svc.Sweep()
	if got := h.metric(t, `sluice_envoy_active_values{domain="sem"}`); got != 0 {
		t.Fatalf("active values after the window closed %v, want 0", got)
	}
	wantResp(t, "f", h.call(t, one("sem", "user", "f")), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 5, perMin, 4, 60))})
}

func TestAppID(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name    string
		entries []Entry
		dyn     []bool
		want    string
	}{
		{"fixed only", []Entry{{"k", "v"}}, []bool{false}, "~"},
		{"empty value", []Entry{{"k", ""}}, []bool{true}, "~"},
		{"one value", []Entry{{"k", "10.0.0.1"}}, []bool{true}, "10.0.0.1"},
		{"two values", []Entry{{"a", "x"}, {"b", "y"}}, []bool{true, true}, "x/y"},
		{"fixed then value", []Entry{{"a", "x"}, {"b", "y"}}, []bool{false, true}, "y"},
		{"escapes", []Entry{{"k", "a/b c%~\n\xff"}}, []bool{true}, "a%2Fb%20c%25%7E%0A%FF"},
		{"tilde is escaped", []Entry{{"k", "~overflow"}}, []bool{true}, "%7Eoverflow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m match
			copy(m.dyn[:], tc.dyn)
			if got := appID(tc.entries, &m); got != tc.want {
				t.Fatalf("appID = %q, want %q", got, tc.want)
			}
		})
	}
	var m match
	m.dyn[0] = true
	a, b := appID([]Entry{{"k", long + "a"}}, &m), appID([]Entry{{"k", long + "b"}}, &m)
	if len(a) != MaxAppIDBytes || len(b) != MaxAppIDBytes || a == b {
		t.Fatalf("long ids %q and %q: want %d bytes each and different", a, b, MaxAppIDBytes)
	}
}

func TestHealthService(t *testing.T) {
	h := newHarness(t, Options{})
	hc := healthpb.NewHealthClient(h.conn)
	for _, svc := range []string{"", HealthService} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v, want SERVING", svc, resp, err)
		}
	}
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "other"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v, want NotFound", err)
	}
}

// TestZeroHitsIsACheck: a descriptor's hits_addend of 0 checks the limit
// without counting or recording anything, even against a limit of 0.
func TestZeroHitsIsACheck(t *testing.T) {
	h := newHarness(t, Options{})
	h.load(t, "testdata/reload")
	zero := withHits(one("reload", "block", "x"), wrapperspb.UInt64(0))
	wantResp(t, "zero hits on a limit of 0", h.call(t, zero), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 0, perSec, 0, 1))})
	wantResp(t, "one hit on a limit of 0", h.call(t, one("reload", "block", "x")), &rlpb.RateLimitResponse{OverallCode: over, Statuses: st(dstatus(over, 0, perSec, 0, 1))})
	check := withHits(one("reload", "one_per_minute", "x"), wrapperspb.UInt64(0))
	for range 3 {
		wantResp(t, "check", h.call(t, check), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 1, perMin, 1, 60))})
	}
	wantResp(t, "a hit", h.call(t, one("reload", "one_per_minute", "x")), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 1, perMin, 0, 60))})
	wantResp(t, "check when spent", h.call(t, check), &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 1, perMin, 0, 60))})
	if n := h.sink.Len(); n != 2 {
		t.Fatalf("%d events, want 2 (the denied hit and the admitted one)", n)
	}
}

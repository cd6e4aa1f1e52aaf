package admin

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/smapi"
	"github.com/sluice-dev/sluice/limiter"
)

// s9Service is a service whose metric "hits" is not its first: metrics
// [x, hits], one day limit of 3 on hits.
const s9Service = `{"tokens":["st-s9"],"metrics":[{"name":"x"},{"name":"hits"}],
	"plans":[{"id":"p","limits":[{"metric":"hits","period":"day","max":3}]}],
	"applications":[{"id":"a","plan":"p","user_key":"uk-s9"}]}`

// authrep answers one authrep of hits=n for s9's application, through the
// Service Management API over the admin API's configuration.
func authrep(t *testing.T, srv *smapi.Server, n string) int {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI("/transactions/authrep.xml?service_token=st-s9&service_id=s9&user_key=uk-s9&usage%5Bhits%5D=" + n)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	srv.Handler(&ctx)
	return ctx.Response.StatusCode()
}

// TestCountersFollowMetricsThroughAdminChanges: usage counted on a metric
// stays on that metric whatever the admin API does to the service's other
// metrics, so a day limit of 3 admits 3 units a day, not 3 per change.
func TestCountersFollowMetricsThroughAdminChanges(t *testing.T) {
	base := v1 + "/services/s9"
	cases := []struct {
		name   string
		change func(e *env)
	}{
		{"delete the metric before", func(e *env) {
			e.expect("DELETE", base+"/metrics/x", acmeTok, "", 204, "")
		}},
		{"reorder the metrics", func(e *env) {
			e.expect("PUT", base, acmeTok, `{"metrics":[{"name":"hits"},{"name":"x"}]}`, 200, "")
		}},
		{"add a metric in front", func(e *env) {
			e.expect("PUT", base, acmeTok, `{"metrics":[{"name":"new"},{"name":"x"},{"name":"hits"}]}`, 200, "")
		}},
		{"rename the metric before by delete and add", func(e *env) {
			e.expect("DELETE", base+"/metrics/x", acmeTok, "", 204, "")
			e.expect("PUT", base+"/metrics/y", acmeTok, `{}`, 201, "")
		}},
		{"make hits a child of a new metric", func(e *env) {
			e.expect("PUT", base, acmeTok, `{"metrics":[{"name":"x"},{"name":"all"},{"name":"hits","parent":"all"}]}`, 200, "")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			now := time.Date(2026, 5, 15, 10, 30, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			srv := smapi.New(smapi.Options{
				Catalog: e.proj.Store(),
				Limiter: limiter.New(limiter.Options{Clock: clock}),
				Sink:    &event.MemorySink{},
				Clock:   clock,
			})
			e.expect("PUT", base, acmeTok, s9Service, 201, "")
			if got := authrep(t, srv, "3"); got != 200 {
				t.Fatalf("authrep hits=3: %d, want 200", got)
			}
			if got := authrep(t, srv, "1"); got != 409 {
				t.Fatalf("authrep hits=1 over the day limit: %d, want 409", got)
			}
			tc.change(e)
			if got := authrep(t, srv, "3"); got != 409 {
				t.Errorf("after the change, authrep hits=3: %d, want 409 (the day's 3 units are spent)", got)
			}
			if got := authrep(t, srv, "1"); got != 409 {
				t.Errorf("after the change, authrep hits=1: %d, want 409 (the day's 3 units are spent)", got)
			}
		})
	}
}

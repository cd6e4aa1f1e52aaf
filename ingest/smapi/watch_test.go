package smapi

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/alerts"
	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// seenMove is one counter move a watcher was told of.
type seenMove struct {
	app            string
	period         limiter.Unit
	before, after  int64
	fromReportPath bool
}

// recordingWatcher keeps what it is told.
type recordingWatcher struct{ moves []seenMove }

func (w *recordingWatcher) ObserveReports(_ *catalog.Service, app *catalog.App, rs []limiter.Report) {
	for _, r := range rs {
		w.moves = append(w.moves, seenMove{app: app.ID, period: r.Limit.Period.Unit, before: r.Before, after: r.Current})
	}
}

func (w *recordingWatcher) ObserveChanges(_ *catalog.Service, app *catalog.App, limits []limiter.Limit, cs []limiter.Change) {
	for _, c := range cs {
		w.moves = append(w.moves, seenMove{app: app.ID, period: limits[c.Limit].Period.Unit, before: c.Before, after: c.After, fromReportPath: true})
	}
}

// TestWatcher: an admitted authrep hands its reports to the watcher, a
// denied or authorize call nothing, a report the counters it moved.
func TestWatcher(t *testing.T) {
	e := newEnv(t)
	w := &recordingWatcher{}
	e.srv.watch = w
	const authrep = "/transactions/authrep.xml?service_token=st-a&service_id=svc-a&user_key=uk-a1&usage%5Bhits%5D="
	for _, c := range []struct {
		name   string
		do     func() int
		status int
		want   []seenMove
	}{
		{"authrep admitted", func() int { return e.get(authrep+"3", "").StatusCode() }, 200,
			[]seenMove{{"app1", limiter.Day, 0, 3, false}, {"app1", limiter.Eternity, 0, 3, false}, {"app1", limiter.Sliding, 0, 0, false}}},
		{"authorize", func() int {
			return e.get("/transactions/authorize.xml?service_token=st-a&service_id=svc-a&user_key=uk-a1&usage%5Bhits%5D=1", "").StatusCode()
		}, 200, nil},
		{"authrep denied", func() int { return e.get(authrep+"500", "").StatusCode() }, 409, nil},
		{"report", func() int {
			q := url.Values{"service_token": {"st-a"}, "service_id": {"svc-a"}, "transactions[0][user_key]": {"uk-a1"}, "transactions[0][usage][hits]": {"4"}}
			return e.do(request{method: "POST", uri: "/transactions.xml?" + q.Encode()}).StatusCode()
		}, 202, []seenMove{{"app1", limiter.Day, 3, 7, true}, {"app1", limiter.Eternity, 3, 7, true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.moves = nil
			if st := c.do(); st != c.status {
				t.Fatalf("status %d, want %d", st, c.status)
			}
			if len(w.moves) != len(c.want) {
				t.Fatalf("moves %+v, want %+v", w.moves, c.want)
			}
			for i := range c.want {
				if w.moves[i] != c.want[i] {
					t.Fatalf("moves %+v, want %+v", w.moves, c.want)
				}
			}
		})
	}
}

// watchedEnv is benchEnv with the real alerts detector watching (its
// broker unreachable: what is measured is the hot path's share).
func watchedEnv(tb testing.TB) (*env, *alerts.Detector) {
	e := newEnv(tb)
	d, err := alerts.NewDetector(alerts.DetectorOptions{Brokers: []string{"127.0.0.1:1"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	plan := e.snap.Services["svc-a"].App("app1").Plan()
	plan.Limits = append([]limiter.Limit(nil), plan.Limits...)
	for i := range plan.Limits {
		plan.Limits[i].Max = 1 << 60
	}
	sink := &encodingSink{buf: make([]byte, 0, 512)}
	e.srv = New(Options{Catalog: e.store, Limiter: e.lim, Sink: sink, Clock: e.srv.clock, Metrics: e.reg, Watcher: d})
	return e, d
}

// BenchmarkAuthrepServeWatched is BenchmarkAuthrepServe with utilization
// alerts on: must be 0 allocs/op, and cost a compare per counter.
func BenchmarkAuthrepServeWatched(b *testing.B) {
	e, _ := watchedEnv(b)
	var req fasthttp.Request
	req.SetRequestURI(benchURI)
	req.Header.Set("3scale-options", "limit_headers=1")
	benchServe(b, e, &req, 200)
}

// TestAuthrepWatchedDoesNotAllocate: alerts keep the hot path
// allocation-free, for authrep and for a report.
func TestAuthrepWatchedDoesNotAllocate(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts need a normal (not -short, not -race) build")
	}
	e, _ := watchedEnv(t)
	for _, c := range []struct{ name, method, uri string }{
		{"authrep", "GET", benchURI},
		{"report", "POST", "/transactions.xml?service_token=st-a&service_id=svc-a&transactions%5B0%5D%5Buser_key%5D=uk-a1&transactions%5B0%5D%5Busage%5D%5Bhits%5D=1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			req.Header.SetMethod(c.method)
			req.SetRequestURI(c.uri)
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
			e.srv.Handler(&ctx)
			n := testing.AllocsPerRun(200, func() {
				ctx.Response.Reset()
				e.srv.Handler(&ctx)
			})
			if st := ctx.Response.StatusCode(); st != 200 && st != 202 {
				t.Fatalf("status %d: %s", st, ctx.Response.Body())
			}
			if n != 0 {
				t.Fatalf("%s with alerts allocates %v times per call", c.name, n)
			}
		})
	}
}

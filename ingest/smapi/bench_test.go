package smapi

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// encodingSink encodes every event into one reused buffer: the work a real
// sink does before it returns, without growing memory for the benchmark.
type encodingSink struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

func (s *encodingSink) Append(e *event.Event) error {
	s.mu.Lock()
	s.buf = event.AppendEvent(s.buf[:0], e)
	s.n++
	s.mu.Unlock()
	return nil
}

// benchEnv is an env whose app1 has limits no benchmark reaches (so every
// authrep is admitted and counted) and whose sink encodes events.
func benchEnv(b *testing.B) *env {
	e := newEnv(b)
	sink := &encodingSink{buf: make([]byte, 0, 512)}
	e.srv = New(Options{Catalog: e.store, Limiter: e.lim, Sink: sink, Clock: e.srv.clock, Region: "eu-1", Node: "n1", Version: "bench", Metrics: e.reg})
	plan := e.snap.Services["svc-a"].App("app1").Plan()
	plan.Limits = []limiter.Limit{
		{Metric: 0, Period: limiter.Period{Unit: limiter.Minute}, Max: 1 << 60},
		{Metric: 0, Period: limiter.Period{Unit: limiter.Day}, Max: 1 << 60},
		{Metric: 0, Period: limiter.Period{Unit: limiter.Eternity}, Max: 1 << 60},
		{Metric: 1, Period: limiter.Period{Unit: limiter.Sliding, Window: 60e9}, Max: 1 << 60},
	}
	return e
}

const benchURI = "/transactions/authrep.xml?service_token=st-a&service_id=svc-a&user_key=uk-a1&usage%5Bhits%5D=1&usage%5Bsearch%5D=1&log%5Bcode%5D=200"

// BenchmarkAuthrepServe calls the handler on a reused RequestCtx whose
// request is already parsed: the server's whole hot path (parse, catalog,
// limiter, event encode, XML answer), without the network. Must be 0
// allocs/op.
func BenchmarkAuthrepServe(b *testing.B) {
	var req fasthttp.Request
	req.SetRequestURI(benchURI)
	req.Header.Set("3scale-options", "limit_headers=1")
	benchServe(b, benchEnv(b), &req, 200)
}

// benchServe runs b.N calls of e's handler with req on one reused
// RequestCtx, each answered with status want.
func benchServe(b *testing.B, e *env, req *fasthttp.Request, want int) {
	var ctx fasthttp.RequestCtx
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	e.srv.Handler(&ctx)
	if ctx.Response.StatusCode() != want {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Response.Reset()
		e.srv.Handler(&ctx)
	}
	b.StopTimer()
	if ctx.Response.StatusCode() != want {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}

// BenchmarkAuthrepHandler runs the full HTTP exchange in process: a
// fasthttp.Server from NewServer on an in-memory listener, and a HostClient
// reusing its connection. allocs/op counts client and server together.
func BenchmarkAuthrepHandler(b *testing.B) {
	e := benchEnv(b)
	ln := fasthttputil.NewInmemoryListener()
	srv := NewServer(e.srv.Handler, ServerOptions{})
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	defer func() { srv.Shutdown(); <-done }()
	c := &fasthttp.HostClient{Addr: "bench", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	req.SetRequestURI("http://bench" + benchURI)
	req.Header.Set("3scale-options", "limit_headers=1")
	if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
		b.Fatalf("%v %d %s", err, resp.StatusCode(), resp.Body())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Do(req, resp); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if resp.StatusCode() != 200 {
		b.Fatalf("status %d", resp.StatusCode())
	}
}

// TestAuthrepServeDoesNotAllocate keeps the zero-allocation promise in the
// ordinary test run, not only in benchmarks.
func TestAuthrepServeDoesNotAllocate(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts need a normal (not -short, not -race) build")
	}
	e := newEnv(t)
	plan := e.snap.Services["svc-a"].App("app1").Plan()
	plan.Limits = append([]limiter.Limit(nil), plan.Limits...)
	for i := range plan.Limits {
		plan.Limits[i].Max = 1 << 60
	}
	sink := &encodingSink{buf: make([]byte, 0, 512)}
	e.srv = New(Options{Catalog: e.store, Limiter: e.lim, Sink: sink, Clock: e.srv.clock, Metrics: e.reg})
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI(benchURI)
	req.Header.Set("3scale-options", "limit_headers=1&hierarchy=1")
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	e.srv.Handler(&ctx)
	n := testing.AllocsPerRun(200, func() {
		ctx.Response.Reset()
		e.srv.Handler(&ctx)
	})
	if ctx.Response.StatusCode() != 200 || sink.n < 200 {
		t.Fatalf("status %d, %d events: %s", ctx.Response.StatusCode(), sink.n, ctx.Response.Body())
	}
	if n != 0 {
		t.Fatalf("authrep allocates %v times per call", n)
	}
}

// benchBatch is an urlencoded batch report of n transactions of app1, as the
// load generator's report-batch-100 scenario sends them.
func benchBatch(n int) []byte {
	body := []byte("service_token=st-a&service_id=svc-a")
	for i := 0; i < n; i++ {
		l := strconv.Itoa(i)
		body = append(body, "&transactions%5B"+l+"%5D%5Buser_key%5D=uk-a1&transactions%5B"+l+"%5D%5Busage%5D%5Bhits%5D=1"...)
	}
	return body
}

// BenchmarkReportBatchServe calls the handler with a batch report of 100
// transactions on a reused RequestCtx: parse, validate, limiter and event
// encoding for each transaction, without the network. ns/txn is the figure
// to compare with the load generator's transactions/s.
func BenchmarkReportBatchServe(b *testing.B) {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/transactions.xml")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.SetBody(benchBatch(100))
	benchServe(b, benchEnv(b), &req, 202)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/txn")
}

// TestReportBatchDoesNotAllocate keeps batch reports of a hundred
// transactions free of allocations once a pooled state has served one: the
// state keeps its room for the transactions, and finding a transaction by its
// label does not grow with the batch.
func TestReportBatchDoesNotAllocate(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts need a normal (not -short, not -race) build")
	}
	e := newEnv(t)
	sink := &encodingSink{buf: make([]byte, 0, 512)}
	e.srv = New(Options{Catalog: e.store, Limiter: e.lim, Sink: sink, Clock: e.srv.clock, Metrics: e.reg})
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/transactions.xml")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.SetBody(benchBatch(100))
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	e.srv.Handler(&ctx)
	n := testing.AllocsPerRun(50, func() {
		ctx.Response.Reset()
		e.srv.Handler(&ctx)
	})
	if ctx.Response.StatusCode() != 202 || sink.n < 100*50 {
		t.Fatalf("status %d, %d events: %s", ctx.Response.StatusCode(), sink.n, ctx.Response.Body())
	}
	if n != 0 {
		t.Fatalf("a batch of 100 transactions allocates %v times", n)
	}
}

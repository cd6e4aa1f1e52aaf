package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Options say how hard and how long to drive a scenario.
type Options struct {
	// Targets are the base URLs (http://host:port) requests go to; the
	// connections are spread over them evenly.
	Targets []string
	// Conns is the number of keep-alive connections, each driven by its
	// own goroutine. Default 64.
	Conns int
	// Rate, when above zero, makes the run open-loop: requests are due at
	// a constant rate (requests/s) whatever the answers, and each one's
	// latency counts from when it was due, so that queueing in the target
	// (or in the generator) is not hidden. Zero: closed-loop, every
	// connection sends its next request as soon as the previous is
	// answered, and latency counts from the send.
	Rate float64
	// Duration of the measured part of the run (default 10s), after Warmup
	// (default none) whose requests are sent but not counted.
	Duration, Warmup time.Duration
	// Timeout of one request (default 5s).
	Timeout time.Duration
	// Progress, if set, gets a progress line every second.
	Progress io.Writer
	// Seed makes the rendered requests reproducible.
	Seed uint64
	// Label names the target in reports ("noop", "sluice dev").
	Label string
	// AnyStatus counts every answer as a success, whatever the scenario
	// expects: the no-op baseline answers 200 to everything.
	AnyStatus bool

	doer func(target int) doer // tests replace the HTTP client
}

// doer sends one request.
type doer interface {
	Do(req *fasthttp.Request, resp *fasthttp.Response) error
}

// Result is the outcome of one run.
type Result struct {
	Scenario string `json:"scenario"`
	Label    string `json:"label"`
	Mode     string `json:"mode"` // "open" or "closed"
	// OfferedRate is the open-loop rate asked for (requests/s), 0 closed.
	OfferedRate float64 `json:"offered_rate"`
	Conns       int     `json:"conns"`
	Seconds     float64 `json:"seconds"`
	// Requests answered, of which Errors did not get an expected status
	// (transport errors included); Missed are requests an open-loop run
	// had due but never sent before the end because every connection was
	// busy: a sign of saturation.
	Requests     int64 `json:"requests"`
	Errors       int64 `json:"errors"`
	Missed       int64 `json:"missed"`
	Transactions int64 `json:"transactions"`
	// Throughput in answered requests/s and transactions/s.
	Throughput   float64 `json:"throughput"`
	TxThroughput float64 `json:"tx_throughput"`
	// Latency from the due time (open loop) or the send (closed loop);
	// Service from the send in both modes. Microseconds.
	Latency Percentiles `json:"latency_us"`
	Service Percentiles `json:"service_us"`
	// Statuses counts the answers by HTTP status (0: transport error).
	Statuses map[int]int64 `json:"statuses"`
	// PerRequest counts answers per request kind of the scenario.
	PerRequest map[string]int64 `json:"per_request"`
}

// Percentiles of a latency distribution in microseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func percentilesOf(h *hdrhistogram.Histogram) Percentiles {
	us := func(v int64) float64 { return math.Round(float64(v)/10) / 100 } // ns -> µs, 2 decimals
	return Percentiles{
		P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max()), Mean: math.Round(h.Mean()/10) / 100,
	}
}

// Histogram range: 1µs to 60s in nanoseconds, 3 significant digits.
const (
	histMin = 1_000
	histMax = 60_000_000_000
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

// poolBudget bounds the memory of the pre-rendered requests.
const poolBudget = 32 << 20

// worker is one connection's state.
type worker struct {
	lat, svc   *hdrhistogram.Histogram
	statuses   map[int]int64
	perKind    []int64
	reqs, errs atomic.Int64 // progress, read while running
	tx         int64
}

// Run drives s with o and returns what it measured. It stops early, with
// what it has, when ctx ends.
func Run(ctx context.Context, s *Scenario, o Options) (*Result, error) {
	if len(o.Targets) == 0 {
		return nil, errors.New("load: no target")
	}
	if len(o.Targets) < s.MinTargets {
		return nil, fmt.Errorf("load: scenario %s needs %d targets, have %d", s.Name, s.MinTargets, len(o.Targets))
	}
	if o.Conns <= 0 {
		o.Conns = 64
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return nil, fmt.Errorf("load: rate %v", o.Rate)
	}
	hosts := make([]string, len(o.Targets))
	for i, t := range o.Targets {
		u, err := url.Parse(t)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("load: target %q: want http://host:port", t)
		}
		hosts[i] = u.Host
	}

	// Render a pool of requests up front, cycled by every connection, so
	// that the generator does no templating while it measures.
	pool := renderPool(s, o.Seed)

	newDoer := o.doer
	if newDoer == nil {
		newDoer = func(target int) doer {
			return &fasthttp.HostClient{
				Addr: hosts[target], MaxConns: 1, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
				MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true,
			}
		}
	}
	ws := make([]*worker, o.Conns)
	for i := range ws {
		ws[i] = &worker{lat: newHist(), svc: newHist(), statuses: map[int]int64{}, perKind: make([]int64, len(s.Requests))}
	}

	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	end := measureFrom.Add(o.Duration)
	var next atomic.Int64 // open loop: requests handed to a connection
	var interval float64
	if o.Rate > 0 {
		interval = float64(time.Second) / o.Rate
	}
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	// Open loop: one pacer hands each due time to a free connection when it
	// comes (see pace).
	var tickets chan time.Time
	var pacerDone chan struct{}
	if interval > 0 {
		tickets, pacerDone = make(chan time.Time), make(chan struct{})
		go func() {
			defer close(pacerDone)
			pace(runCtx, start, end, interval, tickets, &next)
		}()
	}

	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newDoer(i % len(hosts))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			host := hosts[i%len(hosts)]
			for j := i * 7919; runCtx.Err() == nil; j++ {
				var due time.Time
				if interval > 0 {
					var ok bool
					select {
					case due, ok = <-tickets:
						if !ok {
							return
						}
					case <-runCtx.Done():
						return
					}
				}
				p := &pool[j%len(pool)]
				rs := &s.Requests[p.kind]
				req.Reset()
				req.Header.SetMethod(rs.Method)
				req.SetRequestURIBytes(p.uri)
				req.Header.SetHost(host)
				if p.body != nil {
					if rs.ContentType != "" {
						req.Header.SetContentType(rs.ContentType)
					}
					req.SetBodyRaw(p.body)
				}
				sent := time.Now()
				if interval == 0 {
					due = sent
				}
				err := d.Do(req, resp)
				done := time.Now()
				if done.After(end) && interval == 0 {
					return // closed loop: an answer after the end is not counted
				}
				if due.Before(measureFrom) {
					continue
				}
				status := 0
				if err == nil {
					status = resp.StatusCode()
				}
				w.statuses[status]++
				w.perKind[p.kind]++
				w.reqs.Add(1)
				if err != nil || (!o.AnyStatus && !slices.Contains(rs.Expect, status)) {
					w.errs.Add(1)
				} else {
					w.tx += int64(rs.Transactions)
				}
				w.lat.RecordValue(clampHist(done.Sub(due)))
				w.svc.RecordValue(clampHist(done.Sub(sent)))
			}
		}()
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if o.Progress == nil {
			return
		}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-stopProgress:
				fmt.Fprintln(o.Progress)
				return
			case now := <-t.C:
				var n, e int64
				for _, w := range ws {
					n += w.reqs.Load()
					e += w.errs.Load()
				}
				phase := "measuring"
				if now.Before(measureFrom) {
					phase = "warming up"
				}
				fmt.Fprintf(o.Progress, "\r%s %s: %s %4.0fs/%.0fs %9d req/s, %d errors   ", s.Name, o.Label, phase,
					now.Sub(start).Seconds(), end.Sub(start).Seconds(), n-last, e)
				last = n
			}
		}
	}()
	wg.Wait()
	if pacerDone != nil {
		<-pacerDone
	}
	close(stopProgress)
	<-progressDone

	elapsed := time.Since(measureFrom)
	if elapsed > o.Duration {
		elapsed = o.Duration // the drain after the end is not measured time
	}
	r := &Result{Scenario: s.Name, Label: o.Label, Mode: "closed", Conns: o.Conns, Seconds: elapsed.Seconds(),
		Statuses: map[int]int64{}, PerRequest: map[string]int64{}}
	if interval > 0 {
		r.Mode, r.OfferedRate = "open", o.Rate
		// Requests due before the end that no connection got to send.
		due := int64(math.Ceil((o.Warmup + o.Duration).Seconds() * o.Rate))
		r.Missed = min(max(due-next.Load(), 0), int64(math.Ceil(o.Duration.Seconds()*o.Rate)))
	}
	lat, svc := newHist(), newHist()
	for _, w := range ws {
		lat.Merge(w.lat)
		svc.Merge(w.svc)
		r.Requests += w.reqs.Load()
		r.Errors += w.errs.Load()
		r.Transactions += w.tx
		for k, v := range w.statuses {
			r.Statuses[k] += v
		}
		for k, v := range w.perKind {
			if v > 0 {
				r.PerRequest[s.Requests[k].Name] += v
			}
		}
	}
	if r.Seconds > 0 {
		r.Throughput = math.Round(float64(r.Requests) / r.Seconds)
		r.TxThroughput = math.Round(float64(r.Transactions) / r.Seconds)
	}
	r.Latency, r.Service = percentilesOf(lat), percentilesOf(svc)
	return r, ctx.Err()
}

// pace hands request k, due at start + k×interval, to the first free
// connection at its due time (or as soon as one is free, if none was), until
// end, and counts the requests handed out in *handed. A connection that
// slept until its own due time would wake up to a millisecond late: the Go
// runtime's timers wait in epoll, whose timeout is in milliseconds, and that
// lateness would count as the target's latency. So a single goroutine does
// the waiting, on a finer clock where the system has one (precise), and the
// connections wait on the channel.
func pace(ctx context.Context, start, end time.Time, interval float64, tickets chan<- time.Time, handed *atomic.Int64) {
	defer close(tickets)
	precise := startPrecise()
	defer precise.stop()
	for k := int64(0); ; k++ {
		due := start.Add(time.Duration(float64(k) * interval))
		if !due.Before(end) {
			return
		}
		precise.sleepUntil(ctx, due)
		select {
		case tickets <- due:
			handed.Add(1)
		case <-ctx.Done():
			return
		}
	}
}

func clampHist(d time.Duration) int64 { return min(max(int64(d), histMin), histMax) }

// renderPool renders requests of s in their weights' proportions, as many
// as fit poolBudget (between 64 and 16384), each kind drawn with
// probability weight / sum of weights.
func renderPool(s *Scenario, seed uint64) []prepared {
	p := newPicker(s, seed)
	total := 0
	for _, r := range s.Requests {
		total += r.Weight
	}
	// Size one of each to estimate the pool's size.
	size := 0
	for k := range s.Requests {
		x := s.render(k, p)
		size += (len(x.uri) + len(x.body)) * s.Requests[k].Weight / total
	}
	n := min(max(poolBudget/max(size, 1), 64), 16384)
	pool := make([]prepared, n)
	for i := range pool {
		x, kind := p.r.IntN(total), 0
		for x >= s.Requests[kind].Weight {
			x -= s.Requests[kind].Weight
			kind++
		}
		pool[i] = s.render(kind, p)
	}
	return pool
}

// timerSleepUntil returns at t, or when ctx ends, on the runtime's timers.
func timerSleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

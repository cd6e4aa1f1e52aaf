package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// unit is usage of one metric as sent (before the hierarchy).
type unit struct {
	metric string
	v      int64
}

// call is usage of one application whose usage time lies in [lo, hi] (unix
// ms): exactly known for a report with a timestamp, bracketed by the
// client's send and answer times for an authrep (the server stamps its
// receive time).
type call struct {
	app     string
	usage   []unit
	lo, hi  int64
	unknown bool // no answer: it may or may not have been recorded
}

func (c call) units() int64 {
	var n int64
	for _, u := range c.usage {
		n += u.v
	}
	return n
}

// ledger is what the load generators know about the usage they sent: the
// acknowledged usage whose minute is certain, aggregated per (app, metric
// with the hierarchy applied, minute), and the loose calls: acknowledged
// with an uncertain minute (an authrep answered across a minute boundary)
// or with an unknown outcome (no answer). Expected values are bounds
// [lo, hi]; they are equal, and the checks exact, when nothing is loose.
type ledger struct {
	mu      sync.Mutex
	certain map[minuteKey]int64
	loose   []call

	ackedUnits, unknownUnits, ambiguous int64
	answers                             map[string]int
}

func newLedger() *ledger {
	return &ledger{certain: make(map[minuteKey]int64), answers: make(map[string]int)}
}

func (l *ledger) answer(what string) {
	l.mu.Lock()
	l.answers[what]++
	l.mu.Unlock()
}

// ack records acknowledged usage.
func (l *ledger) ack(c call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ackedUnits += c.units()
	if c.lo/60000 != c.hi/60000 {
		l.ambiguous++
		l.loose = append(l.loose, c)
		return
	}
	for _, u := range c.usage {
		for _, m := range lineage(u.metric) {
			l.certain[minuteKey{c.app, m, c.lo / 60000}] += u.v
		}
	}
}

// unknownOutcome records usage that may or may not have been recorded.
func (l *ledger) unknownOutcome(c call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.unknown = true
	l.unknownUnits += c.units()
	l.loose = append(l.loose, c)
}

// bounds returns the usage of app's metric (hierarchy applied) in the
// minutes [from, to): lo is surely in it (acknowledged), hi possibly.
func (l *ledger) bounds(app, metric string, from, to int64) (lo, hi int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, v := range l.certain {
		if k.app == app && k.metric == metric && k.minute >= from && k.minute < to {
			lo += v
		}
	}
	hi = lo
	for _, c := range l.loose {
		if c.app != app {
			continue
		}
		mlo, mhi := c.lo/60000, c.hi/60000
		inside := mlo >= from && mhi < to
		overlaps := mhi >= from && mlo < to
		for _, u := range c.usage {
			if !slices.Contains(lineage(u.metric), metric) {
				continue
			}
			if inside && !c.unknown {
				lo += u.v
			}
			if overlaps {
				hi += u.v
			}
		}
	}
	return lo, hi
}

func (l *ledger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.answers))
	for k := range l.answers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "acknowledged %d units, unknown outcome %d units, %d authreps with an ambiguous minute; answers:",
		l.ackedUnits, l.unknownUnits, l.ambiguous)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, l.answers[k])
	}
	return b.String()
}

// loadOpts shape a load generator.
type loadOpts struct {
	listen      string
	apps        []string
	workers     int
	reportShare float64       // fraction of requests that are batch reports
	batch       int           // transactions per batch report
	spread      time.Duration // report timestamps uniformly in [now-spread, now] (seconds)
	budget      int64         // total units to send; 0: until stop
	rate        float64       // requests per second over all workers; 0: unpaced
	seed        uint64
}

// phases split authrep latencies: the test moves phase forward.
const maxPhases = 4

// load runs workers sending authreps and batch reports and records every
// answer in the ledger.
type load struct {
	o      loadOpts
	l      *ledger
	client *fasthttp.HostClient
	stop   atomic.Bool
	wg     sync.WaitGroup
	phase  atomic.Int32

	mu      sync.Mutex
	left    int64
	sent    int64
	latency [maxPhases][]time.Duration
}

func startLoad(o loadOpts, l *ledger) *load {
	ld := &load{o: o, l: l, left: o.budget, client: &fasthttp.HostClient{
		Addr:         o.listen,
		MaxConns:     o.workers * 2,
		ReadTimeout:  20 * time.Second,
		WriteTimeout: 20 * time.Second,
		// Never resend: a resent authrep would be usage the ledger
		// does not know about.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}}
	for w := 0; w < o.workers; w++ {
		ld.wg.Add(1)
		go ld.worker(w)
	}
	return ld
}

// Stop stops the workers and waits for their last answers.
func (ld *load) Stop() {
	ld.stop.Store(true)
	ld.wg.Wait()
}

// Wait waits for a budgeted load to finish.
func (ld *load) Wait() { ld.wg.Wait() }

// reserve takes up to n units from the budget.
func (ld *load) reserve(n int64) int64 {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.o.budget > 0 {
		n = min(n, ld.left)
		ld.left -= n
	}
	ld.sent += n
	return n
}

// Sent is how many units were sent so far.
func (ld *load) Sent() int64 {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.sent
}

// trim cuts usage down to n units in total.
func trim(u []unit, n int64) []unit {
	var out []unit
	for _, x := range u {
		if n <= 0 {
			break
		}
		x.v = min(x.v, n)
		n -= x.v
		out = append(out, x)
	}
	return out
}

func randomUsage(r *rand.Rand, maxV int64) []unit {
	n := 1 + r.IntN(2)
	out := make([]unit, 0, n)
	for _, i := range r.Perm(len(metrics))[:n] {
		out = append(out, unit{metrics[i], 1 + r.Int64N(maxV)})
	}
	return out
}

func (ld *load) worker(w int) {
	defer ld.wg.Done()
	r := rand.New(rand.NewPCG(ld.o.seed, uint64(w)))
	var interval time.Duration
	if ld.o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(ld.o.workers) / ld.o.rate)
	}
	next := time.Now().Add(time.Duration(r.Int64N(int64(interval) + 1)))
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for !ld.stop.Load() {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			if lag := time.Since(next); lag > time.Second {
				next = time.Now() // do not burst to catch up after a stall
			}
		}
		var ok bool
		if r.Float64() < ld.o.reportShare {
			ok = ld.report(r, req, resp)
		} else {
			ok = ld.authrep(r, req, resp)
		}
		if !ok {
			return // budget spent
		}
	}
}

// authrep sends one authrep; false when the budget is spent.
func (ld *load) authrep(r *rand.Rand, req *fasthttp.Request, resp *fasthttp.Response) bool {
	c := call{app: ld.o.apps[r.IntN(len(ld.o.apps))], usage: randomUsage(r, 5)}
	n := ld.reserve(c.units())
	if n == 0 {
		return false
	}
	c.usage = trim(c.usage, n)
	// The server stamps an authrep with its receive time: keep calls away
	// from minute boundaries so that the minute is known.
	now := time.Now()
	if into := now.Sub(now.Truncate(time.Minute)); into < 600*time.Millisecond {
		time.Sleep(600*time.Millisecond - into)
	} else if into > time.Minute-200*time.Millisecond {
		time.Sleep(time.Minute - into + 600*time.Millisecond)
	}
	q := url.Values{"service_token": {serviceToken}, "service_id": {serviceID}, "app_id": {c.app}}
	for _, u := range c.usage {
		q.Set("usage["+u.metric+"]", strconv.FormatInt(u.v, 10))
	}
	req.Reset()
	req.SetRequestURI("http://" + ld.o.listen + "/transactions/authrep.xml?" + q.Encode())
	req.Header.Set("3scale-options", "no_body=1")
	t0 := time.Now()
	err := ld.client.Do(req, resp)
	t1 := time.Now()
	// The server's clock is a coarse clock that may lag real time a little:
	// its stamp lies in [t0 - 500ms, t1].
	c.lo, c.hi = t0.Add(-500*time.Millisecond).UnixMilli(), t1.UnixMilli()
	if err != nil {
		ld.transportError(err, c)
		return true
	}
	ld.recordLatency(t1.Sub(t0))
	switch code := resp.StatusCode(); code {
	case 200:
		ld.l.ack(c)
		ld.l.answer("authrep-200")
	default:
		// 409 denied, 4xx errors and 503 (refused or not recorded):
		// no usage in the event log.
		ld.l.answer("authrep-" + strconv.Itoa(code))
	}
	return true
}

// report sends one batch report with timestamps; false when the budget is
// spent.
func (ld *load) report(r *rand.Rand, req *fasthttp.Request, resp *fasthttp.Response) bool {
	now := time.Now()
	var calls []call
	var total int64
	for i := 0; i < ld.o.batch; i++ {
		ts := now.Add(-time.Duration(r.Int64N(int64(ld.o.spread) + 1))).Unix()
		c := call{app: ld.o.apps[r.IntN(len(ld.o.apps))], usage: randomUsage(r, 9), lo: ts * 1000, hi: ts * 1000}
		calls = append(calls, c)
		total += c.units()
	}
	n := ld.reserve(total)
	if n == 0 {
		return false
	}
	if n < total { // the budget's last units: cut the batch to fit exactly
		var kept []call
		for _, c := range calls {
			if n == 0 {
				break
			}
			c.usage = trim(c.usage, n)
			n -= c.units()
			kept = append(kept, c)
		}
		calls = kept
	}
	form := url.Values{"service_token": {serviceToken}, "service_id": {serviceID}}
	for i, c := range calls {
		p := "transactions[" + strconv.Itoa(i) + "]"
		form.Set(p+"[app_id]", c.app)
		form.Set(p+"[timestamp]", strconv.FormatInt(c.lo/1000, 10))
		for _, u := range c.usage {
			form.Set(p+"[usage]["+u.metric+"]", strconv.FormatInt(u.v, 10))
		}
	}
	req.Reset()
	req.SetRequestURI("http://" + ld.o.listen + "/transactions.xml")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.SetBodyString(form.Encode())
	err := ld.client.Do(req, resp)
	if err != nil {
		for _, c := range calls {
			ld.transportError(err, c)
		}
		return true
	}
	code := resp.StatusCode()
	ld.l.answer("report-" + strconv.Itoa(code))
	for _, c := range calls {
		switch {
		case code == 202:
			ld.l.ack(c)
		case code >= 500:
			// A failing batch keeps the transactions before the failing
			// one recorded (ingest/smapi): outcome unknown per call.
			ld.l.unknownOutcome(c)
		}
	}
	return true
}

// transportError: a call refused at dial was never sent; any other error
// leaves the outcome unknown (the server may have recorded it).
func (ld *load) transportError(err error, c call) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, fasthttp.ErrDialTimeout) {
		ld.l.answer("dial-error")
		time.Sleep(20 * time.Millisecond)
		return
	}
	ld.l.answer("transport-error")
	ld.l.unknownOutcome(c)
	time.Sleep(20 * time.Millisecond)
}

func (ld *load) recordLatency(d time.Duration) {
	p := ld.phase.Load()
	ld.mu.Lock()
	ld.latency[p] = append(ld.latency[p], d)
	ld.mu.Unlock()
}

// percentile returns the p-quantile (0..1) of phase's authrep latencies and
// how many there were.
func (ld *load) percentile(phase int, p float64) (time.Duration, int) {
	ld.mu.Lock()
	lat := slices.Clone(ld.latency[phase])
	ld.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(p*float64(len(lat))))], len(lat)
}

// logLatency logs p50/p99 per phase.
func (ld *load) logLatency(t *testing.T, names ...string) {
	t.Helper()
	for i, name := range names {
		p50, n := ld.percentile(i, 0.50)
		p99, _ := ld.percentile(i, 0.99)
		t.Logf("authrep latency %s: p50 %v, p99 %v (%d calls)", name, p50, p99, n)
	}
}

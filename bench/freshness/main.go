// Command freshness measures Sluice's end-to-end freshness: how long after an
// authrep its usage is visible in ClickHouse, at a steady call rate.
//
// It starts the pipeline the way production runs it, on this machine: a
// kfake broker in this process on a real TCP port, a local ClickHouse
// (internal/chlocal), and two `sluice serve` processes (--roles api and
// --roles rollup). It then sends authreps with usage[hits]=1 at -rate calls/s
// over -conns keep-alive connections (fasthttp), paced per connection, to
// -apps applications, for -duration after a -warmup.
//
// Method: every acknowledged call's send time is kept per application, in
// order. A poller reads sum(value) per application from usage_minute every
// -poll; when an application's sum first reaches k, its k-th unit became
// visible at that poll's completion time (conservative: the true moment lies
// between the previous poll and this one). Freshness of a unit = visible time
// − send time. Units sent during the warmup are not measured. Usage of one
// application lands in one Kafka partition in arrival order, so matching the
// k-th sent unit with the k-th visible unit errs at most by the spread of
// concurrent sends (microseconds to a few ms).
//
// Usage:
//
//	go run ./bench/freshness [-rate 20000] [-duration 40s] [-conns 64] [-apps 200]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/e2e"
)

func main() {
	rate := flag.Float64("rate", 20000, "authrep calls per second, over all connections")
	duration := flag.Duration("duration", 40*time.Second, "measured load duration (after the warmup)")
	warmup := flag.Duration("warmup", 5*time.Second, "load before measuring")
	conns := flag.Int("conns", 64, "keep-alive connections, one pacing goroutine each")
	apps := flag.Int("apps", 200, "applications the calls are spread over")
	poll := flag.Duration("poll", 50*time.Millisecond, "ClickHouse polling interval")
	bin := flag.String("bin", "", "prebuilt sluice binary (default: go build ./cmd/sluice)")
	keep := flag.Bool("keep", false, "keep the scratch directory (logs, data)")
	flag.Parse()
	if err := run(*rate, *duration, *warmup, *conns, *apps, *poll, *bin, *keep); err != nil {
		log.Fatal(err)
	}
}

func config(apps int) string {
	var b strings.Builder
	b.WriteString(`tenants:
  - id: fresh
    admin_token: adm-fresh-token
    services:
      - id: svc
        tokens: [st-fresh-token]
        auth_mode: app_id
        metrics: [{name: hits}]
        plans:
          - id: big
            limits:
              - {metric: hits, period: minute, max: 1000000000}
              - {metric: hits, period: month, max: 1000000000}
        applications:
`)
	for i := 0; i < apps; i++ {
		fmt.Fprintf(&b, "          - {id: app%d, plan: big}\n", i)
	}
	return b.String()
}

// sendLog keeps each application's acknowledged send times in order.
type sendLog struct {
	mu    sync.Mutex
	sends [][]int64 // per app: unix ns of acknowledged calls, sorted at the end
}

func run(rate float64, duration, warmup time.Duration, conns, apps int, poll time.Duration, bin string, keep bool) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sluice-freshness-")
	if err != nil {
		return err
	}
	if keep {
		log.Printf("scratch dir %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if bin == "" {
		log.Print("building sluice")
		if bin, err = e2e.Build(ctx, dir); err != nil {
			return err
		}
	}
	logf, err := os.Create(filepath.Join(dir, "processes.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(config(apps)), 0o600); err != nil {
		return err
	}

	broker, err := e2e.StartBroker(filepath.Join(dir, "kafka"), 12)
	if err != nil {
		return err
	}
	defer broker.Stop()
	ch, err := chlocal.Start(ctx, chlocal.Options{Dir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		return fmt.Errorf("ClickHouse: %w", err)
	}
	defer ch.Stop()
	port, err := e2e.FreePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	node := func(roles, cfgFile string) (*e2e.Node, error) {
		o := e2e.NodeOptions{Bin: bin, Roles: roles, Brokers: broker.Addr(), ClickHouse: ch.Addr(),
			DataDir: filepath.Join(dir, "data-"+roles), Name: roles, Config: cfgFile, Log: logf}
		if roles == "api" {
			o.Listen = listen
		}
		n, err := e2e.StartNode(o)
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := n.WaitReady(wctx); err != nil {
			n.Kill()
			return nil, fmt.Errorf("%w\n%s", err, e2e.TailFile(logf.Name(), 3000))
		}
		return n, nil
	}
	api, err := node("api", cfg)
	if err != nil {
		return err
	}
	defer api.Stop(30 * time.Second)
	rl, err := node("rollup", "")
	if err != nil {
		return err
	}
	defer rl.Stop(30 * time.Second)

	conn, err := chschema.Connect(ctx, chschema.ConnOptions{Addr: ch.Addr(), User: "default"})
	if err != nil {
		return err
	}
	defer conn.Close()

	sl := &sendLog{sends: make([][]int64, apps)}
	client := &fasthttp.HostClient{Addr: listen, MaxConns: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxIdemponentCallAttempts: 1}
	var stop atomic.Bool
	var measuring atomic.Bool
	var ok200, other, errs atomic.Int64
	latMu := sync.Mutex{}
	var lat []time.Duration
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(conns) / rate)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			uris := make([]string, apps)
			for a := range uris {
				uris[a] = "http://" + listen + "/transactions/authrep.xml?service_token=st-fresh-token&service_id=svc&app_id=app" +
					strconv.Itoa(a) + "&usage%5Bhits%5D=1"
			}
			local := make([]time.Duration, 0, int(rate*duration.Seconds())/conns+16)
			next := start.Add(time.Duration(w) * interval / time.Duration(conns))
			a := w % apps
			for !stop.Load() {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				a = (a + conns) % apps
				req.SetRequestURI(uris[a])
				req.Header.Set("3scale-options", "no_body=1")
				t0 := time.Now()
				err := client.Do(req, resp)
				d := time.Since(t0)
				switch {
				case err != nil:
					errs.Add(1)
					continue
				case resp.StatusCode() != 200:
					other.Add(1)
					continue
				}
				ok200.Add(1)
				sl.mu.Lock()
				sl.sends[a] = append(sl.sends[a], t0.UnixNano())
				sl.mu.Unlock()
				if measuring.Load() {
					local = append(local, d)
				}
			}
			latMu.Lock()
			lat = append(lat, local...)
			latMu.Unlock()
		}(w)
	}

	// The poller: per app, the times at which the visible sum grew.
	type step struct {
		at  int64 // unix ns, poll completion
		sum int64
	}
	steps := make([][]step, apps)
	pollDone := make(chan struct{})
	var pollStop atomic.Bool
	var polls, pollErrs int
	var pollTime time.Duration
	go func() {
		defer close(pollDone)
		for !pollStop.Load() {
			t0 := time.Now()
			sums, err := appSums(ctx, conn)
			now := time.Now()
			if err != nil {
				pollErrs++
			} else {
				polls++
				pollTime += now.Sub(t0)
				for a, s := range sums {
					if a < apps && (len(steps[a]) == 0 || s > steps[a][len(steps[a])-1].sum) {
						steps[a] = append(steps[a], step{now.UnixNano(), s})
					}
				}
			}
			if d := poll - time.Since(t0); d > 0 {
				time.Sleep(d)
			}
		}
	}()

	load0 := loadavg()
	log.Printf("warming up for %v at %.0f calls/s over %d connections, %d apps", warmup, rate, conns, apps)
	time.Sleep(warmup)
	measureFrom := time.Now()
	base := ok200.Load()
	measuring.Store(true)
	time.Sleep(duration)
	measuring.Store(false)
	measureTo := time.Now()
	measured := ok200.Load() - base
	stop.Store(true)
	wg.Wait()
	log.Printf("load done: %d calls answered 200, %d other, %d errors; waiting for ClickHouse", ok200.Load(), other.Load(), errs.Load())

	// Wait until every acknowledged unit is visible (or give up).
	total := make([]int64, apps)
	for a := range total {
		total[a] = int64(len(sl.sends[a]))
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for a := range total {
			if n := len(steps[a]); total[a] > 0 && (n == 0 || steps[a][n-1].sum < total[a]) {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	pollStop.Store(true)
	<-pollDone

	var fresh []time.Duration
	var invisible, extra int64
	for a := range total {
		sends := sl.sends[a]
		slices.Sort(sends)
		st := steps[a]
		if n := len(st); n > 0 && st[n-1].sum > total[a] {
			extra += st[n-1].sum - total[a]
		}
		j := 0
		for k, sent := range sends {
			for j < len(st) && st[j].sum < int64(k+1) {
				j++
			}
			if j == len(st) {
				invisible += int64(len(sends) - k)
				break
			}
			if sent < measureFrom.UnixNano() || sent >= measureTo.UnixNano() {
				continue
			}
			fresh = append(fresh, time.Duration(st[j].at-sent))
		}
	}
	slices.Sort(fresh)
	slices.Sort(lat)
	q := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(p*float64(len(d))))]
	}
	achieved := float64(measured) / measureTo.Sub(measureFrom).Seconds()
	meanPoll := time.Duration(0)
	if polls > 0 {
		meanPoll = pollTime / time.Duration(polls)
	}
	out := io.Writer(os.Stdout)
	fmt.Fprintf(out, "target rate          %.0f calls/s (%d connections, %d apps)\n", rate, conns, apps)
	fmt.Fprintf(out, "achieved rate        %.0f calls/s answered 200 over %v (other answers %d, errors %d)\n", achieved, duration, other.Load(), errs.Load())
	fmt.Fprintf(out, "authrep latency      p50 %v  p99 %v  (%d calls)\n", q(lat, 0.5).Round(time.Microsecond), q(lat, 0.99).Round(time.Microsecond), len(lat))
	fmt.Fprintf(out, "freshness            p50 %v  p99 %v  max %v  (%d units)\n", q(fresh, 0.5).Round(time.Millisecond), q(fresh, 0.99).Round(time.Millisecond), q(fresh, 1).Round(time.Millisecond), len(fresh))
	fmt.Fprintf(out, "ClickHouse polls     %d, mean %v each, %d failed\n", polls, meanPoll.Round(time.Millisecond), pollErrs)
	if m, err := e2e.Scrape(ctx, listen); err == nil {
		fmt.Fprintf(out, "producer             produced %.0f, spooled %.0f (drained %.0f), errors %.0f\n",
			m["sluice_events_produced_total"], m["sluice_events_spooled_total"], m["sluice_events_spool_drained_total"], m["sluice_producer_errors_total"])
	}
	fmt.Fprintf(out, "load average         %s at the start, %s at the end (1, 5, 15 min)\n", load0, loadavg())
	if invisible > 0 || extra > 0 {
		fmt.Fprintf(out, "MISMATCH             %d acknowledged units never became visible, %d units more than acknowledged\n", invisible, extra)
		return fmt.Errorf("ClickHouse does not match the acknowledged usage")
	}
	return nil
}

// appSums returns sum(value) of hits per application from usage_minute
// (key = the number in "appN").
func appSums(ctx context.Context, conn driver.Conn) (map[int]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT app_id, sum(value) FROM sluice.usage_minute
WHERE tenant_id = 'fresh' AND metric = 'hits' GROUP BY app_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[int]int64)
	for rows.Next() {
		var app string
		var v int64
		if err := rows.Scan(&app, &v); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(strings.TrimPrefix(app, "app"))
		if err != nil {
			return nil, fmt.Errorf("unexpected app %q", app)
		}
		out[n] = v
	}
	return out, rows.Err()
}

// loadavg returns the first three fields of /proc/loadavg: how busy the
// shared machine was, which the figures depend on.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

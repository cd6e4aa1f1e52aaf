// Command regions measures the overshoot of a global limit across regions
// against the replication delay between them.
//
// It starts, per region, a kfake broker in this process and one `sluice
// serve --roles api` process reading the other regions' usage through a
// tcpproxy in front of their brokers, which adds a one-way delay to each
// direction. For each delay (-delays) and round, a fresh application on a
// global hour limit of -max is driven from every region (-clients callers
// per region pausing -pace between authreps) for -run; the overshoot is the
// units admitted past max, and the bound the package doc states is computed
// from the measured admission rates and lags (sluice_region_peer_lag_max_seconds).
// It prints a Markdown table of the medians and, with -svg FILE, writes a
// chart of overshoot and bound against the delay.
//
// Usage:
//
//	go run ./bench/regions [-regions 2] [-max 300] [-rounds 3] [-svg bench/regions.svg]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/bench/internal/sluicebin"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/tcpproxy"
)

func main() {
	regions := flag.Int("regions", 2, "regions")
	maxUnits := flag.Int("max", 300, "the global limit per hour of each application")
	rounds := flag.Int("rounds", 3, "rounds per delay (a fresh application each)")
	clients := flag.Int("clients", 8, "callers per region")
	pace := flag.Duration("pace", 20*time.Millisecond, "pause of each caller between calls")
	runFor := flag.Duration("run", 3*time.Second, "length of a round")
	delays := flag.String("delays", "0ms,50ms,200ms", "one-way delays added by the proxies, comma-separated")
	svg := flag.String("svg", "", "write a chart of overshoot against delay to this file")
	bin := flag.String("bin", "", "prebuilt sluice binary (default: go build ./cmd/sluice)")
	flag.Parse()
	var ds []time.Duration
	for _, s := range strings.Split(*delays, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("-delays: %v", err)
		}
		ds = append(ds, d)
	}
	if err := run(*regions, *maxUnits, *rounds, *clients, *pace, *runFor, ds, *svg, *bin); err != nil {
		log.Fatal(err)
	}
}

type region struct {
	name   string
	proxy  *tcpproxy.Proxy
	broker string
	listen string
	cmd    *exec.Cmd
}

// result is one round.
type result struct {
	overshoot, bound float64
	lag              time.Duration
	rate             float64 // per region, mean
}

func run(n, maxUnits, rounds, clients int, pace, runFor time.Duration, delays []time.Duration, svg, bin string) error {
	dir, err := os.MkdirTemp("", "sluice-bench-regions")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin, err = sluicebin.Build(bin, dir); err != nil {
		return err
	}
	apps := len(delays) * rounds
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `tenants:
  - id: bench
    admin_token: adm-bench-regions
    services:
      - id: svc
        tokens: [st-bench-regions]
        metrics: [{name: hits}]
        plans:
          - id: global
            limits: [{metric: hits, period: hour, max: %[1]d}]
          - id: strict
            limits: [{metric: hits, period: hour, max: %[1]d, strict: true}]
        applications:
`, maxUnits)
	for i := range apps {
		fmt.Fprintf(&cfg, "          - {id: a%d, plan: global, user_key: uk-a%d}\n", i, i)
	}
	for i := range 2 * len(delays) {
		fmt.Fprintf(&cfg, "          - {id: s%d, plan: strict, user_key: uk-s%d}\n", i, i)
	}
	cfgFile := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	var rs []*region
	for i := range n {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(3, event.Topic))
		if err != nil {
			return err
		}
		defer kc.Close()
		px, err := tcpproxy.NewKafka(kc.ListenAddrs()[0])
		if err != nil {
			return err
		}
		defer px.Close()
		rs = append(rs, &region{name: fmt.Sprint("r", i), proxy: px, broker: kc.ListenAddrs()[0], listen: fmt.Sprintf("127.0.0.1:%d", 31801+i)})
	}
	for _, r := range rs {
		args := []string{"serve", "--roles", "api", "--kafka", r.broker, "--listen", r.listen,
			"--data-dir", filepath.Join(dir, r.name), "--node", r.name, "--region", r.name, "--config", cfgFile}
		for _, o := range rs {
			if o != r {
				args = append(args, "--peer-region", o.name+"="+o.proxy.Addr())
			}
		}
		if r.cmd, err = sluicebin.Start(bin, filepath.Join(dir, r.name+".log"), args...); err != nil {
			return err
		}
		defer func() { r.cmd.Process.Signal(os.Interrupt); r.cmd.Wait() }()
	}
	for _, r := range rs {
		if err := waitReady(r.listen); err != nil {
			return err
		}
	}
	if left := time.Until(time.Now().UTC().Truncate(time.Hour).Add(time.Hour)); left < time.Duration(apps+2*len(delays))*(runFor+2*time.Second) {
		fmt.Fprintf(os.Stderr, "waiting %v for the next hour\n", left)
		time.Sleep(left + time.Second)
	}
	res := map[time.Duration][]result{}
	app := 0
	for round := range rounds {
		for _, d := range delays {
			for _, r := range rs {
				r.proxy.SetDelay(d)
			}
			time.Sleep(3*d + 300*time.Millisecond)
			// The lag of this delay alone: the proxies' earlier delays
			// are in the max since start, so the peers' lag is read as the
			// rise of the current lag gauge during the round.
			admitted, times, lags, err := drive(rs, fmt.Sprint("a", app), clients, pace, runFor)
			app++
			if err != nil {
				return err
			}
			total, bound, rate := 0, 0.0, 0.0
			var lag time.Duration
			for i := range rs {
				total += admitted[i]
				r := ratePerSec(times[i])
				rate += r / float64(len(rs))
				bound += r*lags[i].Seconds() + 1
				lag = max(lag, lags[i])
			}
			res[d] = append(res[d], result{overshoot: float64(total - maxUnits), bound: bound, lag: lag, rate: rate})
			fmt.Fprintf(os.Stderr, "round %d, delay %v: admitted %d of max %d, overshoot %d, bound %.1f, lag %v, %.0f/s per region\n",
				round, d, total, maxUnits, total-maxUnits, bound, lag, rate)
		}
	}
	med := func(d time.Duration, f func(result) float64) float64 {
		var v []float64
		for _, r := range res[d] {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	fmt.Printf("| delay (one way) | lag measured | admission rate per region | overshoot | bound (Σ rate × lag + 1) | overshoot / max |\n| --- | --- | --- | --- | --- | --- |\n")
	var points [][3]float64
	for _, d := range delays {
		o, b := med(d, func(r result) float64 { return r.overshoot }), med(d, func(r result) float64 { return r.bound })
		l := med(d, func(r result) float64 { return r.lag.Seconds() })
		fmt.Printf("| %v | %.0f ms | %.0f/s | %.0f | %.1f | %.1f %% |\n", d, l*1000,
			med(d, func(r result) float64 { return r.rate }), o, b, 100*o/float64(maxUnits))
		points = append(points, [3]float64{float64(d.Milliseconds()), o, b})
	}
	fmt.Printf("\n%d regions, max %d per hour, %d callers per region pacing %v, %v per round, medians of %d rounds\n", n, maxUnits, clients, pace, runFor, rounds)

	// Strict: once with every region calling, once with only the first.
	fmt.Printf("\n| delay (one way) | strict, demand from | admitted | admitted share of max | overshoot | last unit admitted after |\n| --- | --- | --- | --- | --- | --- |\n")
	sapp := 0
	for _, d := range delays {
		for _, callers := range [][]*region{rs, rs[:1]} {
			for _, r := range rs {
				r.proxy.SetDelay(d)
			}
			time.Sleep(3*d + 300*time.Millisecond)
			began := time.Now()
			admitted, times, _, err := drive(callers, fmt.Sprint("s", sapp), clients, pace, runFor)
			sapp++
			if err != nil {
				return err
			}
			total := 0
			var last time.Time
			for i, a := range admitted {
				total += a
				if n := len(times[i]); n > 0 && times[i][n-1].After(last) {
					last = times[i][n-1]
				}
			}
			who := "every region"
			if len(callers) == 1 {
				who = "one region"
			}
			fmt.Printf("| %v | %s | %d | %.0f %% | %d | %.2f s |\n", d, who, total, 100*float64(total)/float64(maxUnits), max(total-maxUnits, 0), last.Sub(began).Seconds())
		}
	}
	if svg != "" {
		return os.WriteFile(svg, chart(points, n, maxUnits), 0o644)
	}
	return nil
}

func waitReady(listen string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + listen + "/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 60 s", listen)
}

// drive runs one round for app and returns, per region, the units admitted,
// when, and the lag of that region's events the others measured (the
// largest sluice_region_peer_lag_seconds seen while its events arrived).
func drive(rs []*region, app string, clients int, pace, runFor time.Duration) ([]int, [][]time.Time, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	admitted := make([]int, len(rs))
	times := make([][]time.Time, len(rs))
	lags := make([]time.Duration, len(rs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed error
	for i, r := range rs {
		url := fmt.Sprintf("http://%s/transactions/authrep.xml?service_token=st-bench-regions&service_id=svc&user_key=uk-%s&usage%%5Bhits%%5D=1", r.listen, app)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 10 * time.Second}
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					resp, err := client.Get(url)
					mu.Lock()
					switch {
					case err != nil:
						failed = err
					case resp.StatusCode == 200:
						admitted[i]++
						times[i] = append(times[i], time.Now())
					case resp.StatusCode != 409:
						failed = fmt.Errorf("authrep: %s", resp.Status)
					}
					mu.Unlock()
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					select {
					case <-ctx.Done():
					case <-time.After(pace):
					}
				}
			}()
		}
	}
	// Sample every region's lag gauges while the round runs.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, r := range rs {
				for peer, lag := range scrapeLags(r.listen) {
					for j, o := range rs {
						if o.name == peer {
							mu.Lock()
							lags[j] = max(lags[j], lag)
							mu.Unlock()
						}
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	return admitted, times, lags, failed
}

// scrapeLags returns sluice_region_peer_lag_seconds by peer from listen's
// /metrics.
func scrapeLags(listen string) map[string]time.Duration {
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]time.Duration{}
	const prefix = `sluice_region_peer_lag_seconds{region="`
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		peer, v, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		out[peer] = time.Duration(f * float64(time.Second))
	}
	return out
}

func ratePerSec(ts []time.Time) float64 {
	if len(ts) < 2 {
		return 0
	}
	return float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds()
}

// chart draws overshoot and bound (units) against delay (ms) as SVG.
func chart(points [][3]float64, regions, maxUnits int) []byte {
	const w, h, left, bottom, top, right = 560.0, 320.0, 60.0, 40.0, 30.0, 20.0
	xmax, ymax := 1.0, 1.0
	for _, p := range points {
		xmax, ymax = max(xmax, p[0]), max(ymax, p[1], p[2])
	}
	ymax *= 1.15
	x := func(v float64) float64 { return left + v/xmax*(w-left-right) }
	y := func(v float64) float64 { return h - bottom - v/ymax*(h-bottom-top) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18">Global limit (max %d, %d regions): units admitted past max against one-way delay</text>`+"\n", left, maxUnits, regions)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, h-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">one-way delay (ms)</text>`+"\n", (left+w-right)/2, h-6)
	fmt.Fprintf(&b, `<text x="14" y="%.0f" transform="rotate(-90 14 %.0f)" text-anchor="middle">units</text>`+"\n", (top+h-bottom)/2, (top+h-bottom)/2)
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%.0f</text>`+"\n", left-6, y(v)+4, v)
	}
	series := []struct {
		name, color string
		i           int
	}{{"overshoot (median)", "#c0392b", 1}, {"stated bound", "#2c3e50", 2}}
	for k, s := range series {
		var pts []string
		for _, p := range points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[s.i])))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p[0]), y(p[s.i]), s.color)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", left+12, top+16+float64(k)*16, s.color, s.name)
	}
	for _, p := range points {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0f</text>`+"\n", x(p[0]), h-bottom+16, p[0])
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

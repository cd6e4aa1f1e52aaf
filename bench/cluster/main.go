// Command cluster measures what the cluster's forwarding costs: CPU per call
// and latency of an authrep answered by the application's owner (local)
// against one answered by another API node that forwards it to the owner
// (forwarded).
//
// It starts a kfake broker in this process on a real TCP port and two
// `sluice serve --roles api` processes on it (no ClickHouse: counters start
// empty), with one application whose limit is never reached. It finds the
// node that owns the application and then, in alternating rounds, sends
// authreps at -rate calls/s over -conns keep-alive connections (fasthttp,
// paced per connection; latency from each call's intended send time) to the
// owner (local) and to the other node (forwarded). CPU is the user+system
// time both server processes spent in the round (from /proc), less what they
// spend idle in a round's time (measured first), divided by the calls
// answered: the forwarded figure includes both hops. The medians of
// -rounds rounds are printed as a Markdown table.
//
// Usage:
//
//	go run ./bench/cluster [-rate 2000] [-conns 16] [-round 5s] [-rounds 3]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/bench/internal/sluicebin"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/kafka"
)

const (
	partitions = 12
	config     = `tenants:
  - id: bench
    admin_token: adm-bench-cluster
    services:
      - id: svc
        tokens: [st-bench-cluster]
        metrics: [{name: hits}]
        plans:
          - id: big
            limits: [{metric: hits, period: minute, max: 1000000000000}]
        applications:
          - {id: app, plan: big, user_key: uk-bench}
`
)

func main() {
	rate := flag.Float64("rate", 2000, "calls per second over all connections; 0: closed loop, as fast as the nodes answer")
	conns := flag.Int("conns", 16, "keep-alive connections, one pacing goroutine each")
	round := flag.Duration("round", 5*time.Second, "length of one round")
	rounds := flag.Int("rounds", 3, "rounds of each kind (alternating)")
	bin := flag.String("bin", "", "prebuilt sluice binary (default: go build ./cmd/sluice)")
	flag.Parse()
	if err := run(*rate, *conns, *round, *rounds, *bin); err != nil {
		log.Fatal(err)
	}
}

type node struct {
	listen string
	cmd    *exec.Cmd
}

func run(rate float64, conns int, round time.Duration, rounds int, bin string) error {
	dir, err := os.MkdirTemp("", "sluice-bench-cluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin, err = sluicebin.Build(bin, dir); err != nil {
		return err
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(partitions, event.Topic))
	if err != nil {
		return err
	}
	defer kc.Close()
	brokers := strings.Join(kc.ListenAddrs(), ",")
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return err
	}
	var nodes []*node
	for i, port := range []int{31701, 31702} {
		n := &node{listen: fmt.Sprintf("127.0.0.1:%d", port)}
		args := []string{"serve", "--roles", "api", "--kafka", brokers, "--listen", n.listen,
			"--data-dir", filepath.Join(dir, fmt.Sprint("n", i)), "--node", fmt.Sprint("n", i)}
		if i == 0 {
			args = append(args, "--config", cfg)
		}
		if n.cmd, err = sluicebin.Start(bin, filepath.Join(dir, fmt.Sprint("n", i, ".log")), args...); err != nil {
			return err
		}
		defer func() { n.cmd.Process.Signal(os.Interrupt); n.cmd.Wait() }()
		nodes = append(nodes, n)
	}
	owner, other, err := settle(nodes)
	if err != nil {
		return err
	}
	url := "/transactions/authrep.xml?service_token=st-bench-cluster&service_id=svc&user_key=uk-bench&usage%5Bhits%5D=1"
	type result struct{ callsPerSec, cpuPerCall, p50, p99 float64 }
	// The nodes' background work (heartbeats, fetch loops, clocks) is not a
	// call's cost: an idle round measures it, and it is subtracted.
	cpu0 := cpuOf(nodes)
	time.Sleep(round)
	idle := cpuOf(nodes) - cpu0
	fmt.Fprintf(os.Stderr, "idle: %.1f ms CPU in %v\n", idle.Seconds()*1e3, round)
	res := map[string][]result{}
	for r := range 2 * rounds {
		kind, target := "local", owner
		if r%2 == 1 {
			kind, target = "forwarded", other
		}
		cpu0 := cpuOf(nodes)
		lat, calls, errs := load(target.listen, url, rate, conns, round)
		cpu := cpuOf(nodes) - cpu0 - idle
		if errs > 0 {
			return fmt.Errorf("%s round: %d calls failed", kind, errs)
		}
		slices.Sort(lat)
		res[kind] = append(res[kind], result{
			callsPerSec: float64(calls) / round.Seconds(),
			cpuPerCall:  cpu.Seconds() * 1e6 / float64(calls),
			p50:         pct(lat, 0.50), p99: pct(lat, 0.99),
		})
		fmt.Fprintf(os.Stderr, "%s round: %d calls, %.1f µs CPU/call, p50 %.3f ms, p99 %.3f ms\n",
			kind, calls, res[kind][len(res[kind])-1].cpuPerCall, pct(lat, 0.5), pct(lat, 0.99))
	}
	med := func(kind string, f func(result) float64) float64 {
		var v []float64
		for _, r := range res[kind] {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	fmt.Printf("| authrep | calls/s | CPU per call (both nodes) | p50 | p99 |\n| --- | --- | --- | --- | --- |\n")
	for _, kind := range []string{"local", "forwarded"} {
		fmt.Printf("| %s | %.0f | %.1f µs | %.3f ms | %.3f ms |\n", kind,
			med(kind, func(r result) float64 { return r.callsPerSec }), med(kind, func(r result) float64 { return r.cpuPerCall }),
			med(kind, func(r result) float64 { return r.p50 }), med(kind, func(r result) float64 { return r.p99 }))
	}
	fmt.Printf("\nforwarded / local CPU per call: %.2f× (medians of %d rounds each, %.0f calls/s offered over %d connections)\n",
		med("forwarded", func(r result) float64 { return r.cpuPerCall })/med("local", func(r result) float64 { return r.cpuPerCall }),
		rounds, rate, conns)
	return nil
}

var ownedRE = regexp.MustCompile(`"owned":\[([0-9,]*)\]`)

// settle waits until the two nodes own every partition between them and
// returns the application's owner and the other node.
func settle(nodes []*node) (owner, other *node, err error) {
	part := strconv.Itoa(int(kafka.Partition(event.Key(nil, "svc", "app"), partitions)))
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		total := 0
		owner = nil
		for _, n := range nodes {
			status, body, err := fasthttp.Get(nil, "http://"+n.listen+"/status")
			if err != nil || status != 200 {
				total = -1
				break
			}
			m := ownedRE.FindSubmatch(body)
			if m == nil || len(m[1]) == 0 {
				continue
			}
			ps := strings.Split(string(m[1]), ",")
			total += len(ps)
			if slices.Contains(ps, part) {
				owner = n
			}
		}
		if total == partitions && owner != nil {
			if owner == nodes[0] {
				return owner, nodes[1], nil
			}
			return owner, nodes[0], nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, nil, fmt.Errorf("the nodes did not settle within 60s")
}

// cpuOf is the user+system CPU time the nodes' processes have used.
func cpuOf(nodes []*node) time.Duration {
	var total time.Duration
	for _, n := range nodes {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) in ")".
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return total
}

// load sends paced GETs of uri to addr and returns the latencies in ms (from
// each call's intended send time), the calls answered 200 and the failures.
func load(addr, uri string, rate float64, conns int, d time.Duration) (lat []float64, calls, errs int) {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: conns}
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(conns) / rate * float64(time.Second))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + uri)
			next := start.Add(interval * time.Duration(i) / time.Duration(conns))
			var mine []float64
			ok, bad := 0, 0
			for ctx.Err() == nil {
				if interval == 0 {
					next = time.Now()
				} else if w := time.Until(next); w > 0 {
					time.Sleep(w)
				}
				err := c.Do(req, resp)
				if err != nil || resp.StatusCode() != 200 {
					bad++
				} else {
					ok++
					mine = append(mine, float64(time.Since(next))/float64(time.Millisecond))
				}
				next = next.Add(interval)
			}
			mu.Lock()
			lat = append(lat, mine...)
			calls += ok
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, calls, errs
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

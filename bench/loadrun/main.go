// Command loadrun is `make bench-load`: the standard load set, measured in
// one run on this machine, written to bench/load-results and to its
// section of bench/RESULTS.md.
//
// It starts three targets and drives each with the same generator
// (bench/load) and the same built-in scenarios:
//
//   - noop: a fasthttp server answering a fixed 3scale-sized body, the
//     ceiling every throughput is a ratio to;
//   - memsink: the Service Management API (ingest/smapi, behind the same
//     listener as `sluice serve`) with its events encoded into an in-memory
//     ring instead of Kafka: Sluice's hot path alone;
//   - dev: a `sluice dev` process (-sluice), the full pipeline: Kafka
//     (kfake), rollups and ClickHouse on the same machine.
//
// Every target is first primed with 5s of authrep-uniform, not counted.
// Every scenario runs closed loop (saturation) against each target, in
// -rounds rounds that alternate the targets (each figure is a target's
// median round, so that the machine's changing load hits every target
// alike); then
// authrep-uniform runs open loop at fractions of each target's saturation
// (latency from the due time), which the chart draws. The CPU profile of
// memsink's authrep-uniform saturation run is kept beside the reports.
// Peers (-peer label=URL=scenario.yaml) run in the same way when given;
// they are built by hand, never by this command.
//
// Usage:
//
//	go build -o /tmp/sluice ./cmd/sluice && go run ./bench/loadrun -sluice /tmp/sluice
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/bench/internal/sluicebin"
	"github.com/sluice-dev/sluice/bench/load"
	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/smapi"
	"github.com/sluice-dev/sluice/limiter"
)

// The catalog every target serves: 10,000 applications uk-N on a plan with
// the limiter benchmark's three limits, never reached, and 1,000 dk-N on a
// plan whose hits limit is 0 (every authrep refused with 409).
const (
	goodApps   = 10_000
	deniedApps = 1_000
)

func config() string {
	var b strings.Builder
	b.WriteString(`tenants:
  - id: bench
    admin_token: adm-bench-load
    services:
      - id: bench
        tokens: [st-bench]
        metrics: [{name: hits}, {name: search, parent: hits}]
        plans:
          - id: big
            limits:
              - {metric: hits, period: minute, max: 1000000000000}
              - {metric: hits, period: month, max: 1000000000000000}
              - {metric: hits, period: "sliding:1m", max: 1000000000000}
          - id: zero
            limits: [{metric: hits, period: minute, max: 0}]
        applications:
`)
	for i := range goodApps {
		fmt.Fprintf(&b, "          - {id: a%d, plan: big, user_key: uk-%d}\n", i, i)
	}
	for i := range deniedApps {
		fmt.Fprintf(&b, "          - {id: d%d, plan: zero, user_key: dk-%d}\n", i, i)
	}
	return b.String()
}

var (
	scenarios = []string{"authrep-uniform", "authrep-zipf", "authorize", "denied", "report-batch-100", "mix"}
	profiled  string
	rounds    int
)

// median returns the result of median throughput.
func median(rs []*load.Result) *load.Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b *load.Result) int { return cmp.Compare(a.Throughput, b.Throughput) })
	return s[len(s)/2]
}

func main() {
	bin := flag.String("sluice", "", "sluice binary for the dev target (empty: skip it)")
	out := flag.String("out", "bench/load-results", "directory for report.json, report.md, chart.png and the CPU profile")
	results := flag.String("results", "bench/RESULTS.md", "file whose load section is rewritten (empty: none)")
	duration := flag.Duration("duration", 2*time.Second, "measured time of each run")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "warm-up of each run")
	conns := flag.Int("conns", 64, "keep-alive connections")
	var peers peerFlags
	flag.Var(&peers, "peer", "label=URL=scenario.yaml: also drive a peer (repeatable)")
	only := flag.String("scenarios", strings.Join(scenarios, ","), "the scenarios to run, comma-separated")
	profile := flag.String("profile", "memsink/authrep-uniform", "TARGET/SCENARIO whose saturation run is CPU-profiled")
	flag.IntVar(&rounds, "rounds", 3, "closed-loop rounds per scenario, the targets alternating; each figure is the median round")
	flag.Parse()
	scenarios = strings.Split(*only, ",")
	profiled = *profile
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *out, *results, *duration, *warmup, *conns, peers); err != nil {
		log.Fatal(err)
	}
}

type peer struct{ label, url, scenario string }

type peerFlags []peer

func (p *peerFlags) String() string { return fmt.Sprint(*p) }
func (p *peerFlags) Set(v string) error {
	parts := strings.SplitN(v, "=", 3)
	if len(parts) != 3 {
		return fmt.Errorf("want label=URL=scenario.yaml")
	}
	*p = append(*p, peer{parts[0], parts[1], parts[2]})
	return nil
}

type target struct {
	label string
	url   string
}

func run(ctx context.Context, bin, out, results string, duration, warmup time.Duration, conns int, peers []peer) error {
	started := time.Now()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sluice-bench-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfgPath := filepath.Join(tmp, "bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(config()), 0o644); err != nil {
		return err
	}

	noopURL, stopNoop, err := load.StartNoop("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer stopNoop()
	memURL, stopMem, err := startMemsink(cfgPath)
	if err != nil {
		return err
	}
	defer stopMem()
	targets := []target{{"noop", noopURL}, {"memsink", memURL}}
	if bin != "" {
		devURL, stopDev, err := startDev(ctx, bin, tmp, cfgPath)
		if err != nil {
			return err
		}
		defer stopDev()
		targets = append(targets, target{"dev", devURL})
	}

	rep := &load.Report{Machine: machine(), Commit: commit(), When: started.UTC().Format("2006-01-02 15:04 UTC"),
		LoadAverage: loadAverage(), Baseline: "noop",
		Commands: []string{"make bench-load", "# = go build -o bin/sluice ./cmd/sluice && go run ./bench/loadrun " + strings.Join(os.Args[1:], " ")}}
	opts := load.Options{Conns: conns, Duration: duration, Warmup: warmup, Progress: os.Stderr}
	// Prime every target with authrep-uniform first, not counted: every
	// application's counters exist and `sluice dev` has finished starting
	// (restore, ClickHouse's first parts) before anything is measured.
	prime, err := load.Open("authrep-uniform")
	if err != nil {
		return err
	}
	for _, t := range targets {
		o := opts
		o.Targets, o.Label, o.AnyStatus, o.Warmup, o.Duration = []string{t.url}, t.label+" (priming)", true, 0, 5*time.Second
		if _, err := load.Run(ctx, prime, o); err != nil {
			return err
		}
	}
	saturation := map[string]float64{}
	for _, name := range scenarios {
		s, err := load.Open(name)
		if err != nil {
			return err
		}
		type run struct {
			target
			s *load.Scenario
		}
		var runs []run
		for _, t := range targets {
			runs = append(runs, run{t, s})
		}
		if name == "authrep-uniform" {
			for _, p := range peers {
				ps, err := load.LoadScenario(p.scenario)
				if err != nil {
					return err
				}
				ps.Name = name // compared with the same scenario's baseline
				runs = append(runs, run{target{p.label, p.url}, ps})
			}
		}
		// Rounds alternate the targets, so that a change in the machine's
		// load hits all of them; each target's figure is its median round.
		per := map[string][]*load.Result{}
		for round := range rounds {
			for _, r := range runs {
				o := opts
				o.Targets, o.Label, o.AnyStatus = []string{r.url}, r.label, r.label == "noop"
				var prof *os.File
				if r.label+"/"+name == profiled && round == rounds/2 {
					if prof, err = os.Create(filepath.Join(out, "cpu-"+r.label+"-"+name+".pprof")); err != nil {
						return err
					}
					if err := pprof.StartCPUProfile(prof); err != nil {
						return err
					}
				}
				res, err := load.Run(ctx, r.s, o)
				if prof != nil {
					pprof.StopCPUProfile()
					prof.Close()
				}
				if err != nil {
					return err
				}
				per[r.label] = append(per[r.label], res)
			}
		}
		for _, r := range runs {
			res := median(per[r.label])
			rep.Results = append(rep.Results, res)
			if name == "authrep-uniform" {
				saturation[r.label] = res.Throughput
			}
		}
	}
	// Latency against offered load, at fractions of each target's own
	// saturation.
	s, _ := load.Open("authrep-uniform")
	for _, t := range targets {
		for _, f := range []float64{0.25, 0.5, 0.75, 0.9} {
			o := opts
			o.Targets, o.Label, o.AnyStatus = []string{t.url}, t.label, t.label == "noop"
			o.Rate = float64(int(saturation[t.label]*f/100)) * 100
			if o.Rate <= 0 {
				continue
			}
			res, err := load.Run(ctx, s, o)
			if err != nil {
				return err
			}
			rep.Results = append(rep.Results, res)
		}
	}
	if err := writeReports(rep, out, results, time.Since(started)); err != nil {
		return err
	}
	log.Printf("bench-load done in %v; reports in %s", time.Since(started).Round(time.Second), out)
	return nil
}

// ringSink encodes every event, as the Kafka producer does, into a 64 MiB
// ring that is overwritten: the cost of the event hand-off without a
// broker.
type ringSink struct {
	mu   sync.Mutex
	ring []byte
	pos  int
	n    int64
}

func (s *ringSink) Append(e *event.Event) error {
	if err := event.Validate(e); err != nil {
		return err
	}
	n := event.EncodedLen(e)
	s.mu.Lock()
	if s.pos+n > len(s.ring) {
		s.pos = 0
	}
	event.AppendEvent(s.ring[s.pos:s.pos:len(s.ring)], e)
	s.pos += n
	s.n++
	s.mu.Unlock()
	return nil
}

func startMemsink(cfgPath string) (string, func(), error) {
	doc, err := catalog.Load(cfgPath)
	if err != nil {
		return "", nil, err
	}
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		return "", nil, err
	}
	clock := limiter.NewCoarseClock(time.Millisecond)
	lim := limiter.New(limiter.Options{Clock: clock.Now, HugePages: true})
	api := smapi.New(smapi.Options{Catalog: catalog.NewStore(snap), Limiter: lim, Sink: &ringSink{ring: make([]byte, 64<<20)},
		Clock: clock.Now, Region: "local", Node: "memsink", Version: "bench"})
	srv := smapi.NewServer(api.Handler, smapi.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go srv.Serve(ln) //nolint:errcheck // ends with the listener
	return "http://" + ln.Addr().String(), func() { srv.Shutdown(); clock.Stop() }, nil
}

func startDev(ctx context.Context, bin, tmp, cfgPath string) (string, func(), error) {
	listen, err := sluicebin.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	query, err := sluicebin.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "dev", "--config", cfgPath, "--data-dir", filepath.Join(tmp, "dev"), "--listen", listen, "--query-listen", query, "--log-level", "warn")
	logf, err := os.Create(filepath.Join(tmp, "dev.log"))
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting sluice dev: %w", err)
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	}
	url := "http://" + listen
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, _, err := fasthttp.GetTimeout(nil, url+"/status", time.Second)
		if err == nil && code == 200 {
			return url, stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			b, _ := os.ReadFile(filepath.Join(tmp, "dev.log"))
			return "", nil, fmt.Errorf("sluice dev not ready after 3 minutes (status %d, %v):\n%s", code, err, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d × %s, %s, %s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
}

func commit() string {
	b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(b))
	// The results this command writes do not make the measured code dirty.
	if err := exec.Command("git", "diff", "--quiet", "HEAD", "--", ".", ":!bench/RESULTS.md", ":!bench/load-results").Run(); err != nil {
		c += " (with uncommitted changes)"
	}
	return c
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " / ")
	}
	return "unknown"
}

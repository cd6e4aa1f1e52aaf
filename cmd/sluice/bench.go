package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	loadgen "github.com/sluice-dev/sluice/bench/load"
	"github.com/sluice-dev/sluice/internal/flagenv"
)

// cmdBench drives a running Sluice (or anything speaking HTTP) with a load
// scenario; the engine is bench/loadgen.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", "authrep-uniform", "built-in scenario ("+strings.Join(loadgen.Builtin(), ", ")+") or scenario file")
	targets := fs.String("target", "http://127.0.0.1:3001", "base URL of the Service Management API; several, comma-separated, share the connections")
	conns := fs.Int("conns", 64, "keep-alive connections")
	rates := fs.String("rate", "0", "requests/s, open loop; 0: closed loop (saturation); a comma-separated list runs each in turn")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", 2*time.Second, "time before each run's measurement, not counted")
	vars := fs.String("var", "", "scenario variables, comma-separated NAME=VALUE (token=..., service=...)")
	baseline := fs.Bool("baseline", false, "also run every rate against a no-op fasthttp server in this process, for ratios")
	label := fs.String("label", "target", "name of the target in the report")
	jsonOut := fs.String("json", "", "write the JSON report to this file")
	mdOut := fs.String("markdown", "", "write the Markdown report to this file (default: stdout)")
	chartOut := fs.String("chart", "", "write a PNG chart of open-loop latency against offered rate to this file")
	quiet := fs.Bool("quiet", false, "no progress line on stderr")
	fs.Usage = flagenv.Usage(fs, "sluice bench [--scenario NAME|FILE] [--target URL,...] [--rate R,...] [flags]")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	s, err := loadgen.Open(*scenario)
	if err != nil {
		return usageError{err.Error()}
	}
	if *vars != "" {
		for _, kv := range strings.Split(*vars, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usageError{fmt.Sprintf("--var %q: want NAME=VALUE", kv)}
			}
			if s.Vars == nil {
				s.Vars = map[string]string{}
			}
			s.Vars[k] = v
		}
	}
	var rs []float64
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r < 0 || r > 1e8 {
			return usageError{fmt.Sprintf("--rate %q: want requests/s between 0 and 100000000", f)}
		}
		rs = append(rs, r)
	}
	if *conns < 1 || *conns > 10000 {
		return usageError{"--conns must be between 1 and 10000"}
	}
	if *duration < 100*time.Millisecond || *warmup < 0 {
		return usageError{"--duration must be at least 100ms and --warmup not negative"}
	}
	opts := loadgen.Options{Targets: strings.Split(*targets, ","), Conns: *conns, Duration: *duration, Warmup: *warmup, Label: *label}
	if !*quiet {
		opts.Progress = stderr
	}
	rep := &loadgen.Report{Machine: fmt.Sprintf("%d CPUs, %s/%s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH), Commit: version,
		When: time.Now().UTC().Format("2006-01-02 15:04 UTC"), LoadAverage: loadAverage(), Commands: []string{"sluice " + strings.Join(args, " ")}}
	var noop string
	if *baseline {
		base, stop, err := loadgen.StartNoop("127.0.0.1:0")
		if err != nil {
			return err
		}
		defer stop()
		noop, rep.Baseline = base, "noop"
	}
	for _, r := range rs {
		if noop != "" {
			o := opts
			o.Targets, o.Label, o.Rate, o.AnyStatus = []string{noop}, "noop", r, true
			res, err := loadgen.Run(ctx, s, o)
			if err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			rep.Results = append(rep.Results, res)
		}
		o := opts
		o.Rate = r
		res, err := loadgen.Run(ctx, s, o)
		if err != nil {
			return err
		}
		if res.Requests == 0 || res.Statuses[0] == res.Requests {
			return fmt.Errorf("no answer from %s: is it running?", *targets)
		}
		rep.Results = append(rep.Results, res)
	}
	write := func(path string, f func(io.Writer) error) error {
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	if *jsonOut != "" {
		if err := write(*jsonOut, rep.WriteJSON); err != nil {
			return err
		}
	}
	if *chartOut != "" {
		if err := write(*chartOut, rep.WriteChart); err != nil {
			return err
		}
	}
	if *mdOut != "" {
		return write(*mdOut, rep.WriteMarkdown)
	}
	return rep.WriteMarkdown(stdout)
}

// loadAverage is the first field of /proc/loadavg, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

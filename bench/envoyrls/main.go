// Command envoyrls drives a rate limit service over gRPC the way Envoy does:
// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit with one
// descriptor per call, from -c concurrent callers over -conns HTTP/2
// connections, for -d after a -warmup. It prints calls per second and the
// latency percentiles of the calls after the warmup as one Markdown table
// row, so that the same run against Sluice (--envoy-config) and against
// Envoy's reference service gives comparable figures.
//
// Each call names -domain and one entry {-key: value}, the value cycling
// over -values distinct strings (1: one hot counter). Errors (any gRPC
// error) are counted and reported; OVER_LIMIT answers are counted apart
// (configure a limit the run never reaches to measure admitted calls).
//
// With -pids, it also reads the user+system CPU time those processes (the
// server, and for Envoy ratelimit its Redis) spent during the measurement
// from /proc and prints it per call: on a shared machine, where the
// generator and other work take CPU from the server, CPU per call compares
// the servers' cost where throughput alone would compare their share of
// the machine.
//
// Usage:
//
//	go run ./bench/envoyrls -addr 127.0.0.1:8081 [-c 64] [-conns 4] [-d 10s] [-warmup 2s] [-domain bench] [-key app] [-values 1] [-name sluice] [-pids PID,...]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "gRPC address of the rate limit service")
	conc := flag.Int("c", 64, "concurrent callers (calls in flight)")
	conns := flag.Int("conns", 4, "HTTP/2 connections the callers share")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warm := flag.Duration("warmup", 2*time.Second, "calls before the measurement, not counted")
	domain := flag.String("domain", "bench", "rate limit domain")
	key := flag.String("key", "app", "descriptor entry key")
	values := flag.Int("values", 1, "distinct descriptor values, cycled")
	name := flag.String("name", "", "label of the table row (default: -addr)")
	pidList := flag.String("pids", "", "comma-separated PIDs whose CPU time per call to report (Linux)")
	flag.Parse()
	var pids []int
	for _, f := range strings.Split(*pidList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			log.Fatalf("-pids: %v", err)
		}
		pids = append(pids, p)
	}
	if *conc <= 0 || *conns <= 0 || *values <= 0 || *dur <= 0 {
		log.Fatal("-c, -conns, -values and -d must be positive")
	}
	if *name == "" {
		*name = *addr
	}

	clients := make([]rlpb.RateLimitServiceClient, *conns)
	for i := range clients {
		cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		defer cc.Close()
		clients[i] = rlpb.NewRateLimitServiceClient(cc)
	}
	reqs := make([]*rlpb.RateLimitRequest, *values)
	for i := range reqs {
		reqs[i] = &rlpb.RateLimitRequest{Domain: *domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: *key, Value: "v" + strconv.Itoa(i)}},
		}}}
	}
	// One call first: a server that is not there fails the run at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := clients[0].ShouldRateLimit(ctx, reqs[0]); err != nil {
		log.Fatalf("first call: %v", err)
	}
	cancel()

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		errs      atomic.Int64
		over      atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		all       []time.Duration
	)
	for w := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			lat := make([]time.Duration, 0, 1<<16)
			for i := w; !stop.Load(); i++ {
				t0 := time.Now()
				resp, err := c.ShouldRateLimit(context.Background(), reqs[i%len(reqs)])
				d := time.Since(t0)
				if !measuring.Load() {
					continue
				}
				switch {
				case err != nil:
					errs.Add(1)
				case resp.OverallCode == rlpb.RateLimitResponse_OVER_LIMIT:
					over.Add(1)
				}
				lat = append(lat, d)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	time.Sleep(*warm)
	cpu0 := cpuTicks(pids)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(*dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1 := cpuTicks(pids)
	stop.Store(true)
	wg.Wait()

	slices.Sort(all)
	pct := func(p float64) string {
		if len(all) == 0 {
			return "-"
		}
		d := all[min(len(all)-1, int(float64(len(all))*p))]
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64)
	}
	cpu := "-"
	if len(pids) > 0 && len(all) > 0 {
		// Clock ticks are 1/100 s on Linux (USER_HZ).
		cpu = strconv.FormatFloat(float64(cpu1-cpu0)*1e4/float64(len(all)), 'f', 1, 64)
	}
	fmt.Fprintf(os.Stdout, "| %s | %d | %d | %.0f | %s | %s | %s | %s | %d | %d |\n", *name, *conc, *conns,
		float64(len(all))/elapsed.Seconds(), pct(0.50), pct(0.99), pct(0.999), cpu, errs.Load(), over.Load())
}

// cpuTicks sums utime and stime (fields 14 and 15 of /proc/PID/stat, in
// clock ticks) over pids.
func cpuTicks(pids []int) int64 {
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			log.Fatalf("-pids: %v", err)
		}
		// The command name (field 2) may hold spaces: count from its ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		for _, i := range []int{11, 12} { // utime, stime: fields 14 and 15
			v, err := strconv.ParseInt(fields[i], 10, 64)
			if err != nil {
				log.Fatalf("-pids: /proc/%d/stat: %v", p, err)
			}
			total += v
		}
	}
	return total
}

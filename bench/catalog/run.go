package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/bench/internal/sluicebin"
	"github.com/valyala/fasthttp"
)

type runConfig struct {
	bin, file, dir       string
	shape                Shape
	changes              int
	load                 time.Duration
	loadRate, changeRate float64
	conns                int
	keep                 bool
	extra                string
	api                  string
	client               *fasthttp.HostClient
}

func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	c := &runConfig{}
	sh := shapeFlags(fs)
	fs.StringVar(&c.bin, "bin", "", "sluice binary (default: go build ./cmd/sluice)")
	fs.StringVar(&c.file, "config", "", "configuration file written by gen with the same -apps, -services, -plans, -limits")
	fs.IntVar(&c.changes, "changes", 1000, "admin changes whose visibility is measured")
	fs.DurationVar(&c.load, "load", 20*time.Second, "authrep load duration, alone and with changes streaming")
	fs.Float64Var(&c.loadRate, "load-rate", 1000, "authrep calls per second during the load")
	fs.Float64Var(&c.changeRate, "rate", 50, "admin changes per second streamed during the second load")
	fs.IntVar(&c.conns, "conns", 8, "keep-alive connections of the load")
	fs.BoolVar(&c.keep, "keep", false, "keep the data directory")
	fs.StringVar(&c.extra, "dev-args", "", "more arguments for sluice dev, space-separated (e.g. --kafka-listen 127.0.0.1:PORT to keep the configuration on the embedded broker's topic)")
	fs.Parse(args)
	c.shape = *sh
	if c.file == "" {
		return errors.New("-config is required")
	}
	dir, err := os.MkdirTemp("", "catalog-run")
	if err != nil {
		return err
	}
	c.dir = dir
	if !c.keep {
		defer os.RemoveAll(dir)
	}
	if c.bin, err = sluicebin.Build(c.bin, dir); err != nil {
		return err
	}
	api, err := sluicebin.FreeAddr()
	if err != nil {
		return err
	}
	query, err := sluicebin.FreeAddr()
	if err != nil {
		return err
	}
	c.api = api
	c.client = &fasthttp.HostClient{Addr: api, MaxConns: 64, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}

	logf, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	args = append([]string{"dev", "--config", c.file, "--data-dir", filepath.Join(dir, "data"),
		"--listen", api, "--query-listen", query, "--log-level", "warn"}, strings.Fields(c.extra)...)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	}()
	for {
		code, _, _ := c.get("/status")
		if code == 200 {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return errors.New("not ready after 10 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ready := time.Since(start)
	rss, hwm := procMem(cmd.Process.Pid)
	fmt.Printf("startup to /status 200: %.1f s (%.1f s of CPU); RSS %d MiB (peak %d MiB) with %d applications\n",
		ready.Seconds(), procCPU(cmd.Process.Pid).Seconds(), rss>>20, hwm>>20, c.shape.Apps)

	if err := c.visibility(); err != nil {
		return err
	}
	base, err := c.authrepLoad(0)
	if err != nil {
		return err
	}
	with, err := c.authrepLoad(c.changeRate)
	if err != nil {
		return err
	}
	// Alone again: the first run also holds the node's first collection
	// after startup, so it alone is not the quiet baseline.
	after, err := c.authrepLoad(0)
	if err != nil {
		return err
	}
	fmt.Printf("authrep alone:              %s\n", base)
	fmt.Printf("authrep, changes at %3.0f/s:  %s\n", c.changeRate, with)
	fmt.Printf("authrep alone, again:       %s\n", after)
	rss, hwm = procMem(cmd.Process.Pid)
	fmt.Printf("RSS at the end: %d MiB (peak %d MiB)\n", rss>>20, hwm>>20)
	return nil
}

// procMem returns the process's VmRSS and VmHWM in bytes.
func procMem(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			hwm = n << 10
		}
	}
	return rss, hwm
}

// procCPU returns the CPU time (user and system) the process has used: on a
// shared machine, a figure other processes' load does not inflate.
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func (c *runConfig) do(method, path, body string, auth bool) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	res := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + c.api + path)
	req.Header.SetMethod(method)
	if auth {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	if body != "" {
		req.SetBodyString(body)
		req.Header.SetContentType("application/json")
	}
	if err := c.client.Do(req, res); err != nil {
		return 0, nil, err
	}
	return res.StatusCode(), append([]byte(nil), res.Body()...), nil
}

func (c *runConfig) get(path string) (int, []byte, error) { return c.do("GET", path, "", false) }

func (c *runConfig) authrep(service int, uk string) (int, []byte, error) {
	return c.get("/transactions/authrep.xml?provider_key=pk-bench-0123456789&service_id=" + serviceID(service) +
		"&user_key=" + uk + "&usage%5Bhits%5D=1")
}

func (c *runConfig) admin(method, path, body string) error {
	code, b, err := c.do(method, "/admin/api/v1"+path, body, true)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, code, b)
	}
	return nil
}

// change is one admin change and the authrep that shows it applied.
type change struct {
	kind    string
	method  string
	path    string
	body    string
	service int
	userKey string
	visible func(code int, body []byte) bool
}

// changeN returns the i-th change of the visibility run: creating,
// updating and suspending an application, and changing a plan's limit, in
// turn, each on applications no other change touches.
func (c *runConfig) changeN(i int) change {
	s := i % c.shape.Services
	n := c.shape.perService(s)
	switch i % 4 {
	case 0:
		id := fmt.Sprintf("new-%d", i)
		uk := fmt.Sprintf("nk%030d", i)
		return change{kind: "create application", method: "PUT", path: "/services/" + serviceID(s) + "/applications/" + id,
			body: fmt.Sprintf(`{"plan":%q,"user_key":%q}`, planID(0), uk), service: s, userKey: uk,
			visible: func(code int, _ []byte) bool { return code == 200 }}
	case 1:
		a := (i / 4 * 2) % n
		plan := planID((a%c.shape.Plans + 1) % c.shape.Plans)
		return change{kind: "update application", method: "PUT", path: "/services/" + serviceID(s) + "/applications/" + appID(a),
			body: fmt.Sprintf(`{"plan":%q}`, plan), service: s, userKey: userKey(s, a),
			visible: func(code int, b []byte) bool { return bytes.Contains(b, []byte("<plan>"+plan+"</plan>")) }}
	case 2:
		a := (i/4*2 + 1) % n
		return change{kind: "suspend application", method: "PUT", path: "/services/" + serviceID(s) + "/applications/" + appID(a),
			body: `{"state":"suspended"}`, service: s, userKey: userKey(s, a),
			visible: func(code int, b []byte) bool { return bytes.Contains(b, []byte("<authorized>false</authorized>")) }}
	default:
		p := c.shape.Plans - 1
		a := n - 1 - ((n-1-p)%c.shape.Plans+c.shape.Plans)%c.shape.Plans // the last application on plan p: no other change touches it
		maxv := 2_000_000_000 + i
		return change{kind: "change a plan's limit", method: "PUT", path: "/services/" + serviceID(s) + "/plans/" + planID(p) + "/limits/hits/minute",
			body: fmt.Sprintf(`{"max":%d}`, maxv), service: s, userKey: userKey(s, a),
			visible: func(code int, b []byte) bool {
				return bytes.Contains(b, []byte("<max_value>"+strconv.Itoa(maxv)+"</max_value>"))
			}}
	}
}

// visibility makes c.changes changes one after the other and measures for
// each the time from sending it to the first authrep that shows it.
func (c *runConfig) visibility() error {
	lat := map[string][]time.Duration{}
	var all []time.Duration
	for i := range c.changes {
		ch := c.changeN(i)
		t0 := time.Now()
		if err := c.admin(ch.method, ch.path, ch.body); err != nil {
			return err
		}
		for {
			code, body, err := c.authrep(ch.service, ch.userKey)
			if err != nil {
				return err
			}
			if ch.visible(code, body) {
				break
			}
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("change %d (%s) not visible after 10 s: %d %s", i, ch.kind, code, body)
			}
		}
		d := time.Since(t0)
		lat[ch.kind] = append(lat[ch.kind], d)
		all = append(all, d)
	}
	fmt.Printf("admin change visible to authrep, %d changes: %s\n", c.changes, percentiles(all))
	for _, k := range slices.Sorted(mapKeys(lat)) {
		fmt.Printf("  %-22s %s\n", k+":", percentiles(lat[k]))
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	ms := func(x time.Duration) string { return strconv.FormatFloat(float64(x)/1e6, 'f', 2, 64) + " ms" }
	return fmt.Sprintf("n=%d p50 %s p99 %s p99.9 %s max %s", len(s), ms(q(0.5)), ms(q(0.99)), ms(q(0.999)), ms(s[len(s)-1]))
}

// authrepLoad sends authreps at c.loadRate for c.load over c.conns paced
// connections to random applications (none that the changes touch) and
// returns their latency percentiles; with changeRate > 0 it also streams
// admin changes (updating applications, changing a plan's limit) at that
// rate meanwhile.
func (c *runConfig) authrepLoad(changeRate float64) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.load)
	defer cancel()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs []error
		wg   sync.WaitGroup
	)
	every := time.Duration(float64(time.Second) * float64(c.conns) / c.loadRate)
	for w := range c.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(changeRate)))
			var mine []time.Duration
			next := time.Now()
			for ctx.Err() == nil {
				s := r.IntN(c.shape.Services)
				n := c.shape.perService(s)
				a := n/2 + r.IntN(n-n/2) // the upper half: the changes touch the lower
				t0 := time.Now()
				code, _, err := c.authrep(s, userKey(s, a))
				if err == nil && code != 200 {
					err = fmt.Errorf("authrep: %d", code)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	changes := 0
	if changeRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) / changeRate))
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				base := (c.changes/4 + 1 + i) * 4 // past the visibility run's changes
				ch := c.changeN(base + 1)         // updates of applications in the lower half
				if i%10 == 9 {
					ch = c.changeN(base + 3) // and now and then a plan's limit
				}
				if err := c.admin(ch.method, ch.path, ch.body); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				changes++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return "", errs[0]
	}
	out := percentiles(lat)
	if changeRate > 0 {
		out += fmt.Sprintf(" (%d changes made)", changes)
	}
	return out, nil
}

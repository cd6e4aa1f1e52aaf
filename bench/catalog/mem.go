package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
	"github.com/sluice-dev/sluice/limiter"
)

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// cmdMem reports the heap bytes per application of what a node keeps: the
// projection (the config log's state and the catalog built from it, as a
// node holds them, measured together and the catalog alone) and the
// limiter with a counter for every limit of every application.
func cmdMem(args []string) error {
	fs := flag.NewFlagSet("mem", flag.ExitOnError)
	file := fs.String("config", "", "configuration file (from gen)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the load and the projection to this file")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *file == "" {
		return fmt.Errorf("-config is required")
	}
	debug.SetGCPercent(100)
	base := heap()

	t0 := time.Now()
	doc, err := catalog.Load(*file)
	if err != nil {
		return err
	}
	tLoad := time.Since(t0)
	withDoc := heap()

	// The node's projection, as `sluice dev --config` makes it: the file
	// applied to a file log, replayed into a state and a catalog.
	t0 = time.Now()
	dir, err := os.MkdirTemp("", "catalog-mem")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := configlog.OpenFile(dir, nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	keys := catalog.NewKeyRegistry()
	p := configlog.NewProjection(l, &catalog.Store{}, keys, nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go p.Run(rctx)
	if err := p.Sync(ctx); err != nil {
		return err
	}
	if err := p.Apply(ctx, doc); err != nil {
		return err
	}
	doc = nil
	tProject := time.Since(t0)
	cancel()
	snap := p.Store().Load()
	apps := 0
	for _, s := range snap.Services {
		apps += s.Apps().Len()
	}
	withProj := heap()

	// The catalog alone: a second build from the same state, measured as
	// the heap it adds once the document it was built from is gone (its
	// strings stay, shared with the catalog).
	beforeCat := heap()
	doc2 := p.Document()
	snap2, err := catalog.Build(doc2, keys)
	if err != nil {
		return err
	}
	doc2 = nil
	withCat := heap()

	lim := limiter.New(limiter.Options{})
	beforeLim := heap()
	var d limiter.Decision
	for _, s := range snap.Services {
		for _, a := range s.Apps().All() {
			req := limiter.Request{App: a.Key, Limits: a.Plan().Limits, Parents: s.Parents, Mode: limiter.ModeAuthRep,
				Usage: []limiter.Usage{{Metric: 0, Value: 1}}}
			lim.Do(&req, &d)
		}
	}
	withLim := heap()
	per := func(b uint64) float64 { return float64(b) / float64(apps) }
	fmt.Printf("applications: %d (load %.1fs, projection %.1fs)\n", apps, tLoad.Seconds(), tProject.Seconds())
	fmt.Printf("document (parsed file):          %6.0f B/app\n", per(withDoc-base))
	fmt.Printf("projection (log state+catalog):  %6.0f B/app\n", per(withProj-base))
	fmt.Printf("catalog alone (Snapshot):        %6.0f B/app\n", per(withCat-beforeCat))
	fmt.Printf("limiter (counters of every app): %6.0f B/app\n", per(withLim-beforeLim))
	runtime.KeepAlive(snap2)
	runtime.KeepAlive(lim)
	runtime.KeepAlive(p)
	fmt.Fprintln(os.Stderr, "done")
	return nil
}

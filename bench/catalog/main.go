// Command catalog measures Sluice with a large configuration: a generated
// tenant with a million applications (by default: one tenant, 10 services,
// 3 plans of 3 limits each, applications in user_key mode, split evenly
// over the services).
//
//	go run ./bench/catalog gen -out /tmp/1m.json [-apps 1000000]
//	go run ./bench/catalog mem -config /tmp/1m.json
//	go run ./bench/catalog run -config /tmp/1m.json [-bin ./sluice]
//
// gen writes the configuration file, one application at a time. mem builds
// the catalog and fills a limiter for every application in this process and
// reports heap bytes per application for each (after a GC, by
// runtime.MemStats.HeapAlloc). run starts `sluice dev --config FILE` on a
// fresh data directory and reports: the time from start to the first
// /status 200 and the process's RSS then (VmRSS, and its peak VmHWM); the
// latency of -changes admin changes (create, update and suspend an
// application, change a plan's limit, in turn) until an authrep shows each;
// and authrep latency percentiles over -load, first alone, then while admin
// changes stream at -rate per second.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: catalog gen|mem|run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = cmdGen(os.Args[2:])
	case "mem":
		err = cmdMem(os.Args[2:])
	case "run":
		err = cmdRun(context.Background(), os.Args[2:])
	default:
		err = errors.New("usage: catalog gen|mem|run [flags]")
	}
	if err != nil {
		log.Fatal(err)
	}
}

func shapeFlags(fs *flag.FlagSet) *Shape {
	sh := &Shape{}
	fs.IntVar(&sh.Apps, "apps", 1_000_000, "applications in all")
	fs.IntVar(&sh.Services, "services", 10, "services of the tenant")
	fs.IntVar(&sh.Plans, "plans", 3, "plans per service")
	fs.IntVar(&sh.Limits, "limits", 3, "limits per plan")
	return sh
}

func cmdGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	sh := shapeFlags(fs)
	out := fs.String("out", "catalog.json", "file to write (JSON)")
	fs.Parse(args)
	if sh.Apps < 1 || sh.Services < 1 || sh.Plans < 1 || sh.Limits < 1 || sh.Limits > 16 {
		return errors.New("apps, services, plans >= 1; limits 1 to 16")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := sh.write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

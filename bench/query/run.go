package main

import (
	"context"
	"errors"
	"flag"
)

// runConfig are the flags of the run subcommand.
type runConfig struct {
	iterations int
}

func (r *runConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&r.iterations, "n", 200, "iterations per query")
}

func runBench(ctx context.Context, ch *clickHouse, c config, d Dataset) error {
	return errors.New("run: not implemented yet")
}

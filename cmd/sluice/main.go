// Command sluice is the Sluice binary: a 3scale-compatible API usage backend.
// It only parses flags, wires roles together and handles signals; the logic
// lives in the packages under ingest/, limiter/ and query/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-dev/sluice/internal/flagenv"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usageText = `sluice: a 3scale-compatible API usage backend

usage:
  sluice dev     [--config FILE] [--data-dir DIR] [--listen ADDR] [--query-listen ADDR]
  sluice serve   --roles api,rollup,query --kafka HOST:PORT,... --clickhouse HOST:PORT ...
  sluice migrate --clickhouse HOST:PORT
  sluice export  --month YYYY-MM [--format csv|json|ndjson] ...
  sluice config  export|validate FILE
  sluice bench   [--scenario NAME|FILE] [--target URL,...] [--rate R,...] [--baseline]
  sluice version

Run "sluice COMMAND -h" for the flags of a command; every flag can also be set
with the environment variable SLUICE_<FLAG>.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process exit code: 0 success,
// 1 failure, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	// The node commands' --log-level sets level; until they parse their
	// flags, and for the other commands, it is info.
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "dev":
		err = cmdDev(ctx, rest, stdout, stderr, log, level)
	case "serve":
		err = cmdServe(ctx, rest, stderr, log, level)
	case "migrate":
		err = cmdMigrate(ctx, rest, stderr, log)
	case "export":
		err = cmdExport(ctx, rest, stdout, stderr, log)
	case "config":
		err = cmdConfig(ctx, rest, stdout, stderr)
	case "bench":
		err = cmdBench(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "sluice", version)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usageText)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)), errors.Is(err, flagenv.ErrUsage):
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return 1
	}
}

// usageError marks a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Command query benchmarks Sluice's query API on a data set of
// 30 days × 1,000 applications × 3 metrics at minute resolution.
//
//	go run ./bench/query gen   [-dir D] [-addr HOST:PORT] [-db NAME]   build and verify the data set
//	go run ./bench/query verify [...]                                 verify it again
//	go run ./bench/query run   [...]                                  measure the query API over HTTP
//	go run ./bench/query clickhouse [-dir D]                          keep the scratch server up (for run -url against sluice serve)
//	go run ./bench/query config > bench.yaml                           the data set's catalog, for sluice serve --roles query
//	go run ./bench/query clean [-dir D]                               delete the data directory
//
// The data set is generated on the ClickHouse server itself (INSERT ... SELECT
// over system.numbers with intHash64 values), so it takes minutes, not hours,
// and works on ClickHouse 18.16. Without -addr a scratch server is started
// with its data in -dir; the data stays there between gen and run until
// clean. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runCommand(ctx, os.Args[1], os.Args[2:]); err != nil {
		slog.Error(os.Args[1]+" failed", "err", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: query gen|verify|run|config|clickhouse|clean [flags] (-h for flags)")
	os.Exit(2)
}

// config holds the flags shared by every subcommand.
type config struct {
	dir, addr, db, month string
	days, apps           int
	run                  runConfig
}

func (c *config) dataset() (Dataset, error) {
	m, err := time.Parse("2006-01", c.month)
	if err != nil {
		return Dataset{}, fmt.Errorf("-month %q: want YYYY-MM", c.month)
	}
	d := Dataset{Month: m.UTC(), Days: c.days, Apps: c.apps}
	return d, d.Check()
}

func runCommand(ctx context.Context, cmd string, args []string) error {
	var c config
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fs.StringVar(&c.dir, "dir", "/tmp/sluice-bench-query", "data directory of the scratch ClickHouse server (ignored with -addr)")
	fs.StringVar(&c.addr, "addr", "", "native address of an existing ClickHouse server; empty starts a scratch one in -dir")
	fs.StringVar(&c.db, "db", "sluice_bench", "database holding the data set (dropped and rebuilt by gen)")
	fs.StringVar(&c.month, "month", "2026-09", "UTC month of the data set (a closed month, so its export is final)")
	fs.IntVar(&c.days, "days", 30, "days of data from the first of -month")
	fs.IntVar(&c.apps, "apps", 1000, "applications")
	c.run.flags(fs)
	_ = fs.Parse(args)
	if err := chschema.CheckDatabase(c.db); err != nil {
		return err
	}
	d, err := c.dataset()
	if err != nil {
		return err
	}
	switch cmd {
	case "config":
		return d.Document().WriteYAML(os.Stdout)
	case "clean":
		if c.addr != "" {
			return fmt.Errorf("clean deletes -dir only; drop database %s on %s yourself", c.db, c.addr)
		}
		slog.Info("deleting", "dir", c.dir)
		return os.RemoveAll(c.dir)
	case "gen", "verify", "run", "clickhouse":
	default:
		usage()
	}

	ch, err := openClickHouse(ctx, c.addr, c.dir)
	if err != nil {
		return err
	}
	defer ch.close()
	switch cmd {
	case "gen":
		return gen(ctx, ch, c, d)
	case "clickhouse":
		fmt.Printf("ClickHouse on %s (native), database %s; ^C stops it\n", ch.addr, c.db)
		<-ctx.Done()
		return nil
	case "verify":
		t0 := time.Now()
		if err := d.verify(ctx, ch.conn, c.db); err != nil {
			return err
		}
		slog.Info("data set verified", "took", time.Since(t0).Round(time.Second))
		return reportDisk(ctx, ch, c.db)
	default:
		return runBench(ctx, ch, c, d)
	}
}

func gen(ctx context.Context, ch *clickHouse, c config, d Dataset) error {
	slog.Info("generating", "db", c.db, "clickhouse", ch.addr, "month", c.month, "days", d.Days, "apps", d.Apps, "usage_minute_usage_rows", d.UsageRows())
	t0 := time.Now()
	if err := d.generate(ctx, ch.conn, c.db); err != nil {
		return err
	}
	genTook := time.Since(t0)
	slog.Info("generated", "took", genTook.Round(time.Second))
	t1 := time.Now()
	if err := waitMerges(ctx, ch.conn, c.db); err != nil {
		return err
	}
	mergeTook := time.Since(t1)
	t2 := time.Now()
	if err := d.verify(ctx, ch.conn, c.db); err != nil {
		return err
	}
	verifyTook := time.Since(t2)
	if err := reportDisk(ctx, ch, c.db); err != nil {
		return err
	}
	slog.Info("data set ready", "generate", genTook.Round(time.Second), "background_merges_after", mergeTook.Round(time.Second), "verify", verifyTook.Round(time.Second))
	return nil
}

// waitMerges waits until ClickHouse has no merge running on db, so that a
// benchmark started next does not compete with them for the two cores.
func waitMerges(ctx context.Context, conn driver.Conn, db string) error {
	for {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&n); err != nil {
			return fmt.Errorf("system.merges: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// reportDisk logs every table's active parts, rows and bytes on disk, and the
// size of the data directory.
func reportDisk(ctx context.Context, ch *clickHouse, db string) error {
	rows, err := ch.conn.Query(ctx, `SELECT table, count(), sum(rows), sum(bytes), sum(data_uncompressed_bytes)
FROM system.parts WHERE database = ? AND active GROUP BY table ORDER BY table`, db)
	if err != nil {
		return fmt.Errorf("system.parts: %w", err)
	}
	defer rows.Close()
	var total uint64
	for rows.Next() {
		var table string
		var parts, n, bytes, raw uint64
		if err := rows.Scan(&table, &parts, &n, &bytes, &raw); err != nil {
			return err
		}
		total += bytes
		slog.Info("table on disk", "table", table, "parts", parts, "rows", n, "MiB", bytes>>20, "uncompressed_MiB", raw>>20)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	slog.Info("database on disk", "db", db, "MiB", total>>20)
	if ch.server != nil {
		out, err := exec.CommandContext(ctx, "du", "-sh", ch.server.Dir()).Output()
		if err == nil {
			slog.Info("data directory", "du", strings.TrimSpace(string(out)))
		}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/flagenv"
	"github.com/sluice-dev/sluice/query/billing"
)

// defaultClickHouse is the ClickHouse address export uses when --clickhouse
// is not given and --data-dir holds no `sluice dev` ClickHouse.
const defaultClickHouse = "127.0.0.1:9000"

// exportNow is the clock export checks the month against; a variable for
// tests.
var exportNow = time.Now

// cmdExport writes the billing export of one month to stdout. Without
// --tenant it exports every tenant (operator use: the tenant_id column tells
// them apart); the query API's tenant-scoped export is the same rows for one
// tenant.
//
// Without --clickhouse it finds the ClickHouse of a `sluice dev` running on
// --data-dir: dev starts its ClickHouse on a free port and records it in
// DATA_DIR/clickhouse/config.xml, which export reads. With neither, it uses
// 127.0.0.1:9000.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	month := fs.String("month", "", "UTC month to export, YYYY-MM (required; the current month is not final)")
	format := fs.String("format", "csv", "csv, json or ndjson")
	tenant := fs.String("tenant", "", "export only this tenant (default: every tenant)")
	service := fs.String("service-id", "", "export only this service (requires --tenant)")
	var ch chschema.ConnOptions
	fs.StringVar(&ch.Addr, "clickhouse", "", "ClickHouse native-protocol address HOST:PORT (default: the ClickHouse of `sluice dev` on --data-dir, else "+defaultClickHouse+")")
	dataDir := fs.String("data-dir", "./.sluice", "data directory of a `sluice dev` whose ClickHouse to use when --clickhouse is not given")
	db := fs.String("database", chschema.DefaultDatabase, "ClickHouse database")
	timeout := fs.Duration("timeout", billing.DefaultTimeout, "server-side limit on the export query (max_execution_time)")
	chConnFlags(fs, &ch)
	fs.Usage = flagenv.Usage(fs, "sluice export --month YYYY-MM [--format csv|json|ndjson] [--tenant T [--service-id S]] [flags] > file")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	req, err := exportRequest(*month, *format, *tenant, *service, exportNow())
	if err != nil {
		return err
	}
	if *timeout < time.Second {
		return usageError{fmt.Sprintf("--timeout must be at least 1s, not %v", *timeout)}
	}
	req.Timeout = *timeout
	if err := chschema.CheckDatabase(*db); err != nil {
		return usageError{fmt.Sprintf("--database: %v", err)}
	}

	target, origin := ch.Addr, "--clickhouse"
	if target == "" {
		target, origin, err = devClickHouse(*dataDir)
		if err != nil {
			return err
		}
	}
	ch.Addr = target
	conn, err := chschema.Connect(ctx, ch)
	if err != nil {
		return fmt.Errorf("cannot reach ClickHouse at %s (%s): %w", target, origin, err)
	}
	defer conn.Close()
	n, err := billing.Export(ctx, conn, *db, req, stdout)
	if err != nil {
		if errors.Is(err, billing.ErrInterrupted) {
			return fmt.Errorf("the output is truncated: %w", err)
		}
		return fmt.Errorf("ClickHouse at %s: %w", target, err)
	}
	log.Info("billing export written", "month", *month, "format", req.Format, "rows", n, "clickhouse", target)
	return nil
}

// exportRequest checks the export flags; every error is a usage error.
func exportRequest(month, format, tenant, service string, now time.Time) (billing.Request, error) {
	var req billing.Request
	if month == "" {
		return req, usageError{"--month is required (YYYY-MM)"}
	}
	m, err := billing.ParseMonth(month)
	if err != nil {
		return req, usageError{"--month: " + err.Error()}
	}
	if err := billing.CheckMonth(m, now); err != nil {
		return req, usageError{"--month: " + err.Error()}
	}
	f, err := billing.ParseFormat(format)
	if err != nil {
		return req, usageError{"--format: " + err.Error()}
	}
	if service != "" && tenant == "" {
		return req, usageError{"--service-id requires --tenant"}
	}
	req = billing.Request{TenantID: tenant, ServiceID: service, Month: m, Format: f, AllTenants: tenant == ""}
	return req, nil
}

// devClickHouse returns the native address of the ClickHouse that `sluice
// dev` runs on dataDir, read from the configuration it wrote, and where the
// address came from. Without that file it returns defaultClickHouse.
func devClickHouse(dataDir string) (addr, origin string, err error) {
	dir := filepath.Join(dataDir, "clickhouse")
	addr, err = chlocal.ConfiguredAddr(dir)
	if errors.Is(err, os.ErrNotExist) {
		return defaultClickHouse, "default; no `sluice dev` ClickHouse under " + dataDir, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("read the dev ClickHouse address: %w", err)
	}
	return addr, "the `sluice dev` ClickHouse of " + filepath.Join(dir, "config.xml") + "; is `sluice dev --data-dir " + dataDir + "` running?", nil
}

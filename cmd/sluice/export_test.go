package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/query/billing"
)

// exportRun runs `sluice export args...` in-process.
func exportRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	code = run(context.Background(), append([]string{"export"}, args...), &out, &errs)
	return code, out.String(), errs.String()
}

// seedUsage writes November 2026 usage of two tenants into usage_month as the
// rollup does (plus a denial and an offset marker, which exports skip).
func seedUsage(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	ctx := context.Background()
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_month (written, tenant_id, service_id, app_id, plan_id, metric, reason, code, t, kp, ko, value)")
	if err != nil {
		t.Fatal(err)
	}
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []struct {
		tenant, service, app, metric, reason string
		code                                 int16
		ko, value                            int64
	}{
		{"acme", "s1", "app1", "hits", "", 0, 0, 10},
		{"acme", "s1", "app1", "hits", "", 0, 0, 5}, // unmerged duplicate
		{"acme", "s2", "app9", "hits", "", 0, 0, 3},
		{"globex", "s1", "g1", "hits", "", 0, 0, 70},
		{"acme", "s1", "app1", "", "limits_exceeded", 409, 0, 4}, // denial
		{"", "", "", "", "", 0, 42, 1},                           // offset marker
	} {
		if err := b.Append(nov, r.tenant, r.service, r.app, "basic", r.metric, r.reason, r.code, nov, int32(0), r.ko, r.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestExportCommand(t *testing.T) {
	srv, conn := chtest.Start(t)
	const db = "sluice"
	seedUsage(t, conn, db)
	addr := srv.Addr()

	// Without --tenant: every tenant, CSV by default.
	code, out, errs := exportRun(t, "--month", "2026-11", "--clickhouse", addr)
	want := "month,tenant_id,service_id,app_id,plan_id,metric,value\r\n" +
		"2026-11,acme,s1,app1,basic,hits,15\r\n" +
		"2026-11,acme,s2,app9,basic,hits,3\r\n" +
		"2026-11,globex,s1,g1,basic,hits,70\r\n"
	if code != 0 || out != want {
		t.Fatalf("export all tenants: code %d\nstdout %q\nwant   %q\nstderr %s", code, out, want, errs)
	}
	if !strings.Contains(errs, "rows=3") {
		t.Errorf("stderr does not report the row count: %s", errs)
	}

	// Scoped exports are the bytes billing.Export writes for the query API.
	for _, tc := range []struct {
		args []string
		req  billing.Request
	}{
		{[]string{"--tenant", "acme", "--format", "ndjson"}, billing.Request{TenantID: "acme", Format: billing.NDJSON}},
		{[]string{"--tenant", "acme", "--service-id", "s2", "--format", "json"}, billing.Request{TenantID: "acme", ServiceID: "s2", Format: billing.JSON}},
		{[]string{"--tenant", "globex", "--service-id", "s2"}, billing.Request{TenantID: "globex", ServiceID: "s2", Format: billing.CSV}},
		{[]string{"--tenant", "acme' OR '1'='1"}, billing.Request{TenantID: "acme' OR '1'='1", Format: billing.CSV}},
	} {
		code, out, errs := exportRun(t, append([]string{"--month", "2026-11", "--clickhouse", addr}, tc.args...)...)
		tc.req.Month = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		var buf bytes.Buffer
		if _, err := billing.Export(context.Background(), conn, db, tc.req, &buf); err != nil {
			t.Fatal(err)
		}
		if code != 0 || out != buf.String() {
			t.Errorf("%v: code %d\nstdout %q\nwant   %q\nstderr %s", tc.args, code, out, buf.String(), errs)
		}
	}
	// One scoped export checked by value, not only against the library.
	_, out, _ = exportRun(t, "--month", "2026-11", "--clickhouse", addr, "--tenant", "acme", "--service-id", "s1", "--format", "ndjson")
	var row billing.Row
	if err := json.Unmarshal([]byte(out), &row); err != nil || row != (billing.Row{Month: "2026-11", TenantID: "acme", ServiceID: "s1", AppID: "app1", PlanID: "basic", Metric: "hits", Value: 15}) {
		t.Errorf("acme/s1 export %q: %+v %v", out, row, err)
	}

	t.Run("environment", func(t *testing.T) {
		t.Setenv("SLUICE_MONTH", "2026-11")
		t.Setenv("SLUICE_FORMAT", "ndjson")
		t.Setenv("SLUICE_TENANT", "globex")
		t.Setenv("SLUICE_CLICKHOUSE", addr)
		code, out, errs := exportRun(t)
		if code != 0 || !strings.Contains(out, `"tenant_id":"globex"`) || strings.Count(out, "\n") != 1 {
			t.Fatalf("code %d stdout %q stderr %s", code, out, errs)
		}
		// The command line wins over the environment.
		code, out, _ = exportRun(t, "--tenant", "acme", "--format", "csv")
		if code != 0 || !strings.HasPrefix(out, "month,") || strings.Contains(out, "globex") {
			t.Fatalf("flags over env: code %d stdout %q", code, out)
		}
	})

	t.Run("dev data dir", func(t *testing.T) {
		// sluice dev keeps its ClickHouse under DATA_DIR/clickhouse with the
		// configuration chlocal writes; export finds the port there.
		dir := t.TempDir()
		if err := chlocal.WriteConfig(filepath.Join(dir, "clickhouse"), srv.TCPPort(), srv.HTTPPort(), 1); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SLUICE_DATA_DIR", dir)
		code, out, errs := exportRun(t, "--month", "2026-11", "--tenant", "globex")
		if code != 0 || !strings.Contains(out, "2026-11,globex,s1,g1,basic,hits,70\r\n") {
			t.Fatalf("code %d stdout %q stderr %s", code, out, errs)
		}
		got, origin, err := devClickHouse(filepath.Join(dir, "missing"))
		if err != nil || got != defaultClickHouse || !strings.Contains(origin, "no `sluice dev` ClickHouse") {
			t.Errorf("devClickHouse without a dev dir = %q, %q, %v", got, origin, err)
		}
		bad := t.TempDir()
		os.MkdirAll(filepath.Join(bad, "clickhouse"), 0o700)
		os.WriteFile(filepath.Join(bad, "clickhouse", "config.xml"), []byte("<yandex><tcp_port>nope</tcp_port></yandex>"), 0o600)
		if code, out, errs := exportRun(t, "--month", "2026-11", "--data-dir", bad); code != 1 || out != "" || !strings.Contains(errs, "tcp_port") {
			t.Errorf("broken dev config: code %d stdout %q stderr %s", code, out, errs)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		code, out, errs := exportRun(t, "--month", "2026-11", "--clickhouse", "127.0.0.1:1")
		if code != 1 || out != "" || !strings.Contains(errs, "cannot reach ClickHouse at 127.0.0.1:1") {
			t.Fatalf("code %d stdout %q stderr %s", code, out, errs)
		}
		// The schema is missing: the query cannot start, nothing is written.
		code, out, errs = exportRun(t, "--month", "2026-11", "--clickhouse", addr, "--database", "nosuchdb")
		if code != 1 || out != "" || !strings.Contains(errs, "ClickHouse unavailable") {
			t.Fatalf("missing database: code %d stdout %q stderr %s", code, out, errs)
		}
	})
}

func TestExportUsageErrors(t *testing.T) {
	next := time.Now().UTC().AddDate(0, 1, 0).Format("2006-01")
	if time.Now().UTC().Day() > 28 { // AddDate may skip a month; any later month will do
		next = time.Now().UTC().AddDate(0, 2, 0).Format("2006-01")
	}
	cur := time.Now().UTC().Format("2006-01")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no month", nil, nil, "--month is required"},
		{"bad month", nil, []string{"--month", "2026-13"}, "month must be YYYY-MM"},
		{"month with day", nil, []string{"--month", "2026-11-01"}, "month must be YYYY-MM"},
		{"future month", nil, []string{"--month", next}, "has not begun"},
		{"bad format", nil, []string{"--month", cur, "--format", "xml"}, "format must be one of csv, json, ndjson"},
		{"service without tenant", nil, []string{"--month", cur, "--service-id", "s1"}, "--service-id requires --tenant"},
		{"extra argument", nil, []string{"--month", cur, "file.csv"}, `unexpected argument "file.csv"`},
		{"bad timeout", nil, []string{"--month", cur, "--timeout", "0s"}, "--timeout must be at least 1s"},
		{"bad database", nil, []string{"--month", cur, "--database", "a;b"}, "--database"},
		{"unknown flag", nil, []string{"--month", cur, "--tenants", "x"}, "flag provided but not defined"},
		{"bad env format", map[string]string{"SLUICE_FORMAT": "yaml"}, []string{"--month", cur}, "format must be one of"},
		{"bad env duration", map[string]string{"SLUICE_TIMEOUT": "soon"}, []string{"--month", cur}, "SLUICE_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errs := exportRun(t, append(tc.args, "--clickhouse", "127.0.0.1:1")...)
			if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
				t.Fatalf("code %d stdout %q stderr %q; want 2, nothing, %q", code, out, errs, tc.want)
			}
		})
	}
	// The current month is allowed (and then fails only on the connection).
	if code, _, errs := exportRun(t, "--month", cur, "--clickhouse", "127.0.0.1:1"); code != 1 {
		t.Errorf("current month: code %d, stderr %s", code, errs)
	}
}

// TestExportDev is the README's promise: against a running `sluice dev`,
// `sluice export --month <this month>` with no other flag finds dev's
// ClickHouse and lists the demo app's calls.
func TestExportDev(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse and an embedded broker")
	}
	dir := filepath.Join(t.TempDir(), "data")
	listen := freeAddr(t)
	url, stop := startDev(t, dir, listen)
	defer stop()
	waitReady(t, listen)
	const calls = 3
	for range calls {
		if code, body := get(t, url); code != 200 {
			t.Fatalf("authrep: %d %s", code, body)
		}
	}
	month := time.Now().UTC().Format("2006-01")
	want := fmt.Sprintf("%s,%s,%s,%s,%s,hits,%d\r\n", month, catalog.DemoTenantID, catalog.DemoServiceID, catalog.DemoAppID, catalog.DemoPlanID, calls)
	t.Setenv("SLUICE_DATA_DIR", dir) // as if run from the directory dev was started in
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errs := exportRun(t, "--month", month)
		if code == 0 && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("export of a running dev did not list %q within 30s: code %d\nstdout %q\nstderr %s", want, code, out, errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClickHouseCredentials: commands connect as --clickhouse-user with
// --clickhouse-password (or SLUICE_CLICKHOUSE_PASSWORD); a wrong password is
// a clear failure, not a hang.
func TestClickHouseCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("needs clickhouse-server")
	}
	dir := t.TempDir()
	// ClickHouse merges users.d/*.xml into its users.xml. The default user
	// may read only system tables, so what works below works as sluice.
	if err := os.MkdirAll(filepath.Join(dir, "users.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.d", "sluice.xml"), []byte(`<?xml version="1.0"?>
<yandex><users><sluice>
  <password>s3cret</password>
  <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
  <profile>default</profile><quota>default</quota>
</sluice>
<default><allow_databases><database>system</database></allow_databases></default>
</users></yandex>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := chlocal.Start(context.Background(), chlocal.Options{Dir: dir})
	if err != nil {
		t.Fatalf("start ClickHouse: %v", err)
	}
	// After the node started below: a server with clients connected stops slowly.
	t.Cleanup(func() { srv.Stop() })

	for _, tc := range []struct {
		name     string
		args     []string
		env      string
		wantCode int
		wantErr  string
	}{
		{"migrate with the password", []string{"migrate", "--clickhouse-user", "sluice", "--clickhouse-password", "s3cret"}, "", 0, ""},
		{"migrate with the password from the environment", []string{"migrate", "--clickhouse-user", "sluice"}, "s3cret", 0, ""},
		{"migrate with a wrong password", []string{"migrate", "--clickhouse-user", "sluice", "--clickhouse-password", "nope"}, "", 1, "password"},
		{"migrate as sluice without a password", []string{"migrate", "--clickhouse-user", "sluice"}, "", 1, "password"},
		{"export with the password", []string{"export", "--month", "2026-10", "--clickhouse-user", "sluice", "--clickhouse-password", "s3cret"}, "", 0, ""},
		{"export with a wrong password", []string{"export", "--month", "2026-10", "--clickhouse-user", "sluice", "--clickhouse-password", "nope"}, "", 1, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SLUICE_CLICKHOUSE_PASSWORD", tc.env)
			var out, errs bytes.Buffer
			code := run(context.Background(), append(tc.args, "--clickhouse", srv.Addr()), &out, &errs)
			if code != tc.wantCode || !strings.Contains(strings.ToLower(errs.String()), tc.wantErr) {
				t.Fatalf("code %d, stderr %q; want %d containing %q", code, errs.String(), tc.wantCode, tc.wantErr)
			}
		})
	}

	// A query node answers from ClickHouse as that user; with a wrong
	// password serve does not start (its migration is refused).
	cfgFile := writeConfig(t, "tenants:\n  - id: acme\n    admin_token: adm-x\n    query_tokens: [q-x]\n")
	args := func(password, listen string) []string {
		return []string{"serve", "--roles", "query", "--config-log", "file", "--config", cfgFile, "--data-dir", t.TempDir(),
			"--clickhouse", srv.Addr(), "--clickhouse-user", "sluice", "--clickhouse-password", password, "--query-listen", listen}
	}
	var errs bytes.Buffer
	if code := run(context.Background(), args("nope", freeAddr(t)), &bytes.Buffer{}, &errs); code != 1 || !strings.Contains(errs.String(), "password") {
		t.Fatalf("serve with a wrong password: code %d, stderr %q; want 1 naming the password", code, errs.String())
	}
	listen := freeAddr(t)
	startServe(t, args("s3cret", listen)...)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/api/v1/export?month=2026-10", nil)
		req.Header.Set("Authorization", "Bearer q-x")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("query node as sluice: export = %d, want 200", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("query node did not answer: %v", err)
		}
	}
}

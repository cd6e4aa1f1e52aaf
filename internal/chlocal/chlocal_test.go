package chlocal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestStartRestartPersists(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clickhouse-server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(s *Server, q string) {
		t.Helper()
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(s, "CREATE TABLE default.persist (x UInt8) ENGINE = MergeTree ORDER BY x")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil { // idempotent
		t.Fatal(err)
	}
	s2, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s2.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'default' AND name = 'persist'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("table did not survive a restart: count %d", n)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("SLUICE_CLICKHOUSE_SERVER", "")
	old := fallbackBinary
	fallbackBinary = filepath.Join(t.TempDir(), "nope")
	defer func() { fallbackBinary = old }()
	_, err := Start(context.Background(), Options{Dir: t.TempDir()})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install -y clickhouse-server") {
		t.Fatalf("err = %v, want %v", err, ErrNotInstalled)
	}
}

// deploy/clickhouse/start.sh must write the same configuration shape.
func TestStartScriptMatchesConfig(t *testing.T) {
	b, err := os.ReadFile("../../deploy/clickhouse/start.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	for _, tmpl := range []string{configXML, usersXML} {
		for _, line := range strings.Split(tmpl, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "<?xml") {
				continue
			}
			r := strings.NewReplacer("{DIR}", "$dir", "{TCP}", "$tcp", "{HTTP}", "$http", "{INTER}", "$inter")
			if !strings.Contains(script, r.Replace(line)) {
				t.Errorf("start.sh lacks config line %q", r.Replace(line))
			}
		}
	}
}

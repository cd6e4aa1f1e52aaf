package chschema

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDatabase is the database Sluice uses when none is configured.
const DefaultDatabase = "sluice"

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// CheckDatabase reports whether db is a plain identifier; database names are
// spliced into SQL, so anything else is refused.
func CheckDatabase(db string) error {
	if !identRE.MatchString(db) {
		return fmt.Errorf("chschema: database name %q: want letters, digits and _", db)
	}
	return nil
}

// QueryTimeout is the server-side max_execution_time of schema and retention
// statements.
const QueryTimeout = 60 * time.Second

// Settings returns ctx carrying max_execution_time = d (whole seconds, at
// least 1), so that a query stops on the server too, not only in the client.
func Settings(ctx context.Context, d time.Duration) context.Context {
	secs := int(d / time.Second)
	if secs < 1 {
		secs = 1
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": secs}))
}

// Migrate creates the database if needed and applies every migration not yet
// recorded in schema_migrations, in order. It is idempotent, and safe when
// several processes run it at once: statements are IF NOT EXISTS, a race on
// creation is retried, and a version recorded twice is harmless (readers use
// DISTINCT). conn need not have db as its default database.
func Migrate(ctx context.Context, conn driver.Conn, db string) error {
	if err := CheckDatabase(db); err != nil {
		return err
	}
	ctx = Settings(ctx, QueryTimeout)
	if err := execRetry(ctx, conn, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("chschema: create database %s: %w", db, err)
	}
	if err := execRetry(ctx, conn, `CREATE TABLE IF NOT EXISTS `+db+`.`+MigrationsTable+` (
    version UInt32,
    name    String,
    applied DateTime('UTC')
) ENGINE = MergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("chschema: create %s: %w", MigrationsTable, err)
	}
	applied, err := Applied(ctx, conn, db)
	if err != nil {
		return err
	}
	for _, m := range Migrations {
		if applied[m.Version] {
			continue
		}
		for i, st := range m.Statements {
			if err := execRetry(ctx, conn, strings.ReplaceAll(st, "{db}", db)); err != nil {
				return fmt.Errorf("chschema: migration %d (%s) statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+MigrationsTable+" (version, name, applied)")
		if err != nil {
			return fmt.Errorf("chschema: record migration %d: %w", m.Version, err)
		}
		if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
			b.Abort()
			return fmt.Errorf("chschema: record migration %d: %w", m.Version, err)
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("chschema: record migration %d: %w", m.Version, err)
		}
	}
	return nil
}

// Applied returns the recorded migration versions of db.
func Applied(ctx context.Context, conn driver.Conn, db string) (map[int]bool, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	rows, err := Query(ctx, conn, QueryTimeout, "SELECT DISTINCT version FROM "+db+"."+MigrationsTable)
	if err != nil {
		return nil, fmt.Errorf("chschema: read %s: %w", MigrationsTable, err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("chschema: read %s: %w", MigrationsTable, err)
		}
		out[int(v)] = true
	}
	return out, rows.Err()
}

// execRetry runs an idempotent DDL statement, retrying a few times when a
// concurrent creator raced it (ClickHouse may answer "already exists" to a
// CREATE ... IF NOT EXISTS that lost such a race).
func execRetry(ctx context.Context, conn driver.Conn, q string) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = conn.Exec(ctx, q); err == nil {
			return nil
		}
		var ex *clickhouse.Exception
		if !errors.As(err, &ex) || (ex.Code != 57 && ex.Code != 82) { // TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(50*(i+1)) * time.Millisecond):
		}
	}
	return err
}

// Query runs a SELECT whose caller may be cancelled, without handing the
// cancellation to the driver: clickhouse-go v2.50 can panic with "send on
// closed channel" in its own reader goroutine when a query's context ends
// while blocks are still arriving (upstream PR #1677), which would take the
// whole process down. The query is bounded on the server by
// max_execution_time = timeout instead, so a cancelled caller waits at most
// that long.
func Query(ctx context.Context, conn driver.Conn, timeout time.Duration, query string, args ...any) (driver.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return conn.Query(Settings(context.WithoutCancel(ctx), timeout), query, args...)
}

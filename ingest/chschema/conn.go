package chschema

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/internal/tlsconf"
)

// DefaultUser is ClickHouse's built-in user.
const DefaultUser = "default"

// ConnOptions describe a connection to one ClickHouse server.
type ConnOptions struct {
	// Addr is the native-protocol address HOST:PORT (with TLS, the secure
	// port: 9440 by default). Required.
	Addr string
	// User and Password authenticate. Default user DefaultUser; empty
	// password.
	User, Password string
	// TLS encrypts the connection and verifies the server's certificate
	// (and, with a client certificate, authenticates Sluice).
	TLS tlsconf.Client
	// MaxOpenConns and MaxIdleConns size the pool. Default: the driver's
	// (enough for one role's sequential queries); the query API serves
	// concurrent calls and sets more.
	MaxOpenConns, MaxIdleConns int
	// DialTimeout bounds each connection attempt, TLS handshake included.
	// Default 5s.
	DialTimeout time.Duration
}

// PingTimeout bounds the ping of Connect.
const PingTimeout = 5 * time.Second

// Open returns a connection pool for o without connecting: the first query
// (or Ping) dials. Its errors are configuration errors (unreadable
// certificate files, no address).
func Open(o ConnOptions) (driver.Conn, error) {
	if o.Addr == "" {
		return nil, errors.New("clickhouse: no address")
	}
	tlsCfg, err := o.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: TLS: %w", o.Addr, err)
	}
	user := o.User
	if user == "" {
		user = DefaultUser
	}
	dial := o.DialTimeout
	if dial <= 0 {
		dial = 5 * time.Second
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         []string{o.Addr},
		Auth:         clickhouse.Auth{Username: user, Password: o.Password},
		TLS:          tlsCfg,
		DialTimeout:  dial,
		MaxOpenConns: o.MaxOpenConns,
		MaxIdleConns: o.MaxIdleConns,
		Compression:  &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", o.Addr, err)
	}
	return conn, nil
}

// Connect opens a pool for o and pings the server, so that a wrong password,
// an untrusted certificate or an unreachable server is an error here rather
// than at the first query.
func Connect(ctx context.Context, o ConnOptions) (driver.Conn, error) {
	conn, err := Open(o)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", o.Addr, hint(err, o))
	}
	return conn, nil
}

// hint adds what a failed ping most likely means when the driver's error
// does not say it.
func hint(err error, o ConnOptions) error {
	var ex *clickhouse.Exception
	switch {
	case tlsconf.IsVerifyError(err):
		return err
	case errors.As(err, &ex) && (ex.Code == 192 || ex.Code == 193 || ex.Code == 194 || ex.Code == 516):
		// UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
		return fmt.Errorf("authentication of user %q failed: %w", userOf(o), err)
	case o.TLS.On() && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w (does the server serve TLS on this port? ClickHouse's secure native port is tcp_port_secure, 9440 by default)", err)
	}
	return err
}

func userOf(o ConnOptions) string {
	if o.User == "" {
		return DefaultUser
	}
	return o.User
}

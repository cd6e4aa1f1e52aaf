package chschema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal"
	"github.com/sluice-dev/sluice/internal/tlsconf"
	"github.com/sluice-dev/sluice/internal/tlsconf/tlstest"
)

const password = "ch-s3cret"

// secureServer starts a ClickHouse whose default user needs a password and
// which also serves the native protocol over TLS.
func secureServer(t *testing.T, certs tlstest.Files) *chlocal.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs clickhouse-server")
	}
	s, err := chlocal.Start(context.Background(), chlocal.Options{Dir: t.TempDir(), TLSCert: certs.ServerCert, TLSKey: certs.ServerKey, Password: password})
	if err != nil {
		t.Fatalf("start ClickHouse (apt-get install -y clickhouse-server clickhouse-client): %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	if s.SecureAddr() == "" {
		t.Fatal("no secure port")
	}
	return s
}

func TestConnect(t *testing.T) {
	certs := tlstest.New(t)
	other := tlstest.New(t)
	s := secureServer(t, certs)
	for _, tc := range []struct {
		name string
		o    chschema.ConnOptions
		err  []string // substrings of the error; none: success
	}{
		{"tls with password", chschema.ConnOptions{Addr: s.SecureAddr(), Password: password, TLS: tlsconf.Client{CAFile: certs.CA}}, nil},
		{"tls with server name", chschema.ConnOptions{Addr: s.SecureAddr(), User: "default", Password: password, TLS: tlsconf.Client{CAFile: certs.CA, ServerName: "localhost"}}, nil},
		{"plaintext port with password", chschema.ConnOptions{Addr: s.Addr(), Password: password}, nil},
		{"wrong password", chschema.ConnOptions{Addr: s.SecureAddr(), Password: "wrong", TLS: tlsconf.Client{CAFile: certs.CA}},
			[]string{"clickhouse " + s.SecureAddr(), `authentication of user "default" failed`}},
		{"no password", chschema.ConnOptions{Addr: s.SecureAddr(), TLS: tlsconf.Client{CAFile: certs.CA}},
			[]string{"clickhouse " + s.SecureAddr(), "authentication"}},
		{"untrusted certificate", chschema.ConnOptions{Addr: s.SecureAddr(), Password: password, TLS: tlsconf.Client{CAFile: other.CA}},
			[]string{"clickhouse " + s.SecureAddr(), "x509: certificate signed by unknown authority"}},
		{"system pool", chschema.ConnOptions{Addr: s.SecureAddr(), Password: password, TLS: tlsconf.Client{Enabled: true}},
			[]string{"clickhouse " + s.SecureAddr(), "x509: certificate signed by unknown authority"}},
		{"wrong server name", chschema.ConnOptions{Addr: s.SecureAddr(), Password: password, TLS: tlsconf.Client{CAFile: certs.CA, ServerName: "ch.example.com"}},
			[]string{"clickhouse " + s.SecureAddr(), "ch.example.com"}},
		{"tls to the plaintext port", chschema.ConnOptions{Addr: s.Addr(), Password: password, TLS: tlsconf.Client{CAFile: certs.CA}},
			[]string{"clickhouse " + s.Addr()}},
		{"unreadable CA", chschema.ConnOptions{Addr: s.SecureAddr(), TLS: tlsconf.Client{CAFile: "/nonexistent/ca.pem"}},
			[]string{"clickhouse " + s.SecureAddr(), "/nonexistent/ca.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := chschema.Connect(context.Background(), tc.o)
			if len(tc.err) == 0 {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				defer conn.Close()
				var one uint8
				if err := conn.QueryRow(context.Background(), "SELECT toUInt8(1)").Scan(&one); err != nil || one != 1 {
					t.Fatalf("SELECT 1 = %d, %v", one, err)
				}
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("Connect succeeded, want an error containing %q", tc.err)
			}
			for _, want := range tc.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Connect = %v, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

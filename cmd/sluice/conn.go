package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/kafkaconn"
	"github.com/sluice-dev/sluice/internal/tlsconf"
)

// kafkaConnFlags registers the Kafka TLS and SASL flags of every command
// that talks to Kafka.
func kafkaConnFlags(fs *flag.FlagSet, o *kafkaconn.Options) {
	fs.BoolVar(&o.TLS.Enabled, "kafka-tls", false, "connect to the brokers over TLS, trusting the system CA pool (implied by any other --kafka-tls-* flag)")
	fs.StringVar(&o.TLS.CAFile, "kafka-tls-ca", "", "PEM file of the CA certificates that sign the brokers' certificates (default: the system pool)")
	fs.StringVar(&o.TLS.CertFile, "kafka-tls-cert", "", "PEM client certificate for brokers that authenticate clients by certificate (mTLS; with --kafka-tls-key)")
	fs.StringVar(&o.TLS.KeyFile, "kafka-tls-key", "", "PEM private key of --kafka-tls-cert")
	fs.StringVar(&o.TLS.ServerName, "kafka-tls-server-name", "", "name the brokers' certificates must carry (default: the host of each broker address)")
	fs.BoolVar(&o.TLS.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "accept any broker certificate (encryption without authentication; tests only)")
	fs.StringVar(&o.SASLMechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: no SASL; PLAIN sends the password as is, use it with TLS)")
	fs.StringVar(&o.SASLUser, "kafka-sasl-user", "", "SASL user")
	fs.StringVar(&o.SASLPassword, "kafka-sasl-password", "", "SASL password (prefer SLUICE_KAFKA_SASL_PASSWORD: a command line is visible to other users)")
}

// chConnFlags registers the ClickHouse user and TLS flags of every command
// that talks to ClickHouse; --clickhouse itself differs by command.
func chConnFlags(fs *flag.FlagSet, o *chschema.ConnOptions) {
	o.User = chschema.DefaultUser
	fs.StringVar(&o.User, "clickhouse-user", chschema.DefaultUser, "ClickHouse user")
	fs.StringVar(&o.Password, "clickhouse-password", "", "password of --clickhouse-user (prefer SLUICE_CLICKHOUSE_PASSWORD: a command line is visible to other users)")
	fs.BoolVar(&o.TLS.Enabled, "clickhouse-tls", false, "connect to ClickHouse over TLS (--clickhouse is then its secure native port, tcp_port_secure, 9440 by default), trusting the system CA pool (implied by any other --clickhouse-tls-* flag)")
	fs.StringVar(&o.TLS.CAFile, "clickhouse-tls-ca", "", "PEM file of the CA certificates that sign ClickHouse's certificate (default: the system pool)")
	fs.StringVar(&o.TLS.CertFile, "clickhouse-tls-cert", "", "PEM client certificate, for a ClickHouse that asks for one (with --clickhouse-tls-key)")
	fs.StringVar(&o.TLS.KeyFile, "clickhouse-tls-key", "", "PEM private key of --clickhouse-tls-cert")
	fs.StringVar(&o.TLS.ServerName, "clickhouse-tls-server-name", "", "name ClickHouse's certificate must carry (default: the host of --clickhouse)")
	fs.BoolVar(&o.TLS.InsecureSkipVerify, "clickhouse-tls-insecure-skip-verify", false, "accept any ClickHouse certificate (encryption without authentication; tests only)")
}

// listenTLS is the certificate the node's HTTP listeners serve.
type listenTLS struct {
	CertFile, KeyFile string
	// CAFile is what the node trusts when it forwards calls to the other
	// API nodes of its region, which serve the same kind of certificate.
	CAFile string
}

func (l *listenTLS) flags(fs *flag.FlagSet) {
	fs.StringVar(&l.CertFile, "tls-cert", "", "PEM certificate (chain after the leaf) of the API, query and metrics listeners: with --tls-key they serve HTTPS only")
	fs.StringVar(&l.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&l.CAFile, "tls-ca", "", "with --tls-cert: PEM file of the CA certificates that sign the other API nodes' certificates, trusted when calls are forwarded to them (default: the system pool); each node's certificate must be valid for the host of its --advertise")
}

func (l listenTLS) check() error {
	if (l.CertFile == "") != (l.KeyFile == "") {
		return usageError{"--tls-cert and --tls-key go together"}
	}
	if l.CAFile != "" && l.CertFile == "" {
		return usageError{"--tls-ca applies with --tls-cert (it is what a TLS node trusts when it forwards calls)"}
	}
	return nil
}

func (l listenTLS) on() bool { return l.CertFile != "" }

// scheme is the URL scheme of the listeners.
func (l listenTLS) scheme() string {
	if l.on() {
		return "https"
	}
	return "http"
}

// listen opens a TCP listener on addr that serves TLS when l asks for it.
func (l listenTLS) listen(addr string) (net.Listener, error) {
	var cfg *tls.Config
	if l.on() {
		var err error
		if cfg, err = tlsconf.Server(l.CertFile, l.KeyFile); err != nil {
			return nil, fmt.Errorf("listen %s: --tls-cert: %w", addr, err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// forwardTLS is the client configuration of calls forwarded to the other API
// nodes: nil when the listeners serve plain HTTP.
func (l listenTLS) forwardTLS() (*tls.Config, error) {
	if !l.on() {
		return nil, nil
	}
	cfg, err := tlsconf.Client{Enabled: true, CAFile: l.CAFile}.Config()
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	return cfg, nil
}

// kafkaClientOpts builds the client options of o and, when the brokers
// answer, checks that they accept them: a rejected password or certificate
// is a startup error naming the brokers rather than clients retrying in the
// background.
func kafkaClientOpts(ctx context.Context, brokers []string, o kafkaconn.Options) ([]kgo.Opt, error) {
	name := "kafka (--kafka " + strings.Join(brokers, ",") + ")"
	opts, err := o.ClientOpts()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := kafkaconn.Check(ctx, brokers, o); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return opts, nil
}

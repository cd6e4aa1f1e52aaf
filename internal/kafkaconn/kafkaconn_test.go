package kafkaconn_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/kafkaconn"
	"github.com/sluice-dev/sluice/internal/tlsconf"
	"github.com/sluice-dev/sluice/internal/tlsconf/tlstest"
)

func broker(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts an in-process Kafka broker (kfake)")
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, "t")}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// produceConsume round-trips one record through the broker with o, the
// way every Sluice client connects.
func produceConsume(t *testing.T, brokers []string, o kafkaconn.Options) {
	t.Helper()
	opts, err := o.ClientOpts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if fs.NumRecords() != 1 || string(fs.Records()[0].Value) != "v" {
		t.Fatalf("fetched %d records, want the one produced", fs.NumRecords())
	}
}

func TestConnect(t *testing.T) {
	certs := tlstest.New(t)
	mtls := certs.ServerConfig(t)
	mtls.ClientAuth, mtls.ClientCAs = tls.RequireAndVerifyClientCert, certs.Pool
	for _, tc := range []struct {
		name   string
		broker []kfake.Opt
		conn   kafkaconn.Options
	}{
		{"plaintext", nil, kafkaconn.Options{}},
		{"tls", []kfake.Opt{kfake.TLS(certs.ServerConfig(t))},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA}}},
		{"mtls", []kfake.Opt{kfake.TLS(mtls)},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey, ServerName: "localhost"}}},
		{"sasl plain over tls", []kfake.Opt{kfake.TLS(certs.ServerConfig(t)), kfake.EnableSASL(), kfake.Superuser(kafkaconn.Plain, "sluice", "s3cret")},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA}, SASLMechanism: "plain", SASLUser: "sluice", SASLPassword: "s3cret"}},
		{"scram-sha-256", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(kafkaconn.ScramSHA256, "sluice", "s3cret")},
			kafkaconn.Options{SASLMechanism: kafkaconn.ScramSHA256, SASLUser: "sluice", SASLPassword: "s3cret"}},
		{"scram-sha-512 over tls", []kfake.Opt{kfake.TLS(certs.ServerConfig(t)), kfake.EnableSASL(), kfake.Superuser(kafkaconn.ScramSHA512, "sluice", "s3cret")},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA}, SASLMechanism: kafkaconn.ScramSHA512, SASLUser: "sluice", SASLPassword: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := broker(t, tc.broker...)
			if err := kafkaconn.Check(context.Background(), brokers, tc.conn); err != nil {
				t.Fatalf("Check: %v", err)
			}
			produceConsume(t, brokers, tc.conn)
		})
	}
}

// TestCheckRefused: a broker that refuses the connection is a clear error
// that says why, not a client retrying in the background.
func TestCheckRefused(t *testing.T) {
	certs := tlstest.New(t)
	other := tlstest.New(t) // a CA that did not sign the broker's certificate
	mtls := certs.ServerConfig(t)
	mtls.ClientAuth, mtls.ClientCAs = tls.RequireAndVerifyClientCert, certs.Pool
	scram := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(kafkaconn.ScramSHA256, "sluice", "s3cret")}
	for _, tc := range []struct {
		name   string
		broker []kfake.Opt
		conn   kafkaconn.Options
		want   error
		text   string
	}{
		{"wrong scram password", scram,
			kafkaconn.Options{SASLMechanism: kafkaconn.ScramSHA256, SASLUser: "sluice", SASLPassword: "wrong"}, kafkaconn.ErrAuth, "SASL authentication failed"},
		{"unknown scram user", scram,
			kafkaconn.Options{SASLMechanism: kafkaconn.ScramSHA256, SASLUser: "nobody", SASLPassword: "s3cret"}, kafkaconn.ErrAuth, "SASL authentication failed"},
		{"wrong plain password", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(kafkaconn.Plain, "sluice", "s3cret")},
			kafkaconn.Options{SASLMechanism: kafkaconn.Plain, SASLUser: "sluice", SASLPassword: "wrong"}, kafkaconn.ErrAuth, "SASL authentication failed"},
		{"untrusted certificate", []kfake.Opt{kfake.TLS(certs.ServerConfig(t))},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: other.CA}}, kafkaconn.ErrTLS, "certificate signed by unknown authority"},
		{"wrong server name", []kfake.Opt{kfake.TLS(certs.ServerConfig(t))},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA, ServerName: "kafka.example.com"}}, kafkaconn.ErrTLS, "kafka.example.com"},
		{"no client certificate for mtls", []kfake.Opt{kfake.TLS(mtls)},
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA}}, kafkaconn.ErrTLS, "certificate"},
		{"tls to a plaintext broker", nil,
			kafkaconn.Options{TLS: tlsconf.Client{CAFile: certs.CA}}, kafkaconn.ErrTLS, "TLS"},
		{"plaintext to a tls broker", []kfake.Opt{kfake.TLS(certs.ServerConfig(t))},
			kafkaconn.Options{}, kafkaconn.ErrAuth, "require TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := broker(t, tc.broker...)
			start := time.Now()
			err := kafkaconn.Check(context.Background(), brokers, tc.conn)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Check = %v, want %v containing %q", err, tc.want, tc.text)
			}
			if strings.Contains(err.Error(), "s3cret") || tc.conn.SASLPassword != "" && strings.Contains(err.Error(), tc.conn.SASLPassword) {
				t.Errorf("the error shows a password: %v", err)
			}
			if d := time.Since(start); d > kafkaconn.CheckTimeout+time.Second {
				t.Errorf("Check took %v to give up", d)
			}
		})
	}
}

// TestCheckUnreachable: no broker answering is left to the clients, which
// wait for it.
func TestCheckUnreachable(t *testing.T) {
	if err := kafkaconn.Check(context.Background(), []string{"127.0.0.1:1"}, kafkaconn.Options{}); err != nil {
		t.Fatalf("Check = %v, want nil", err)
	}
}

func TestClientOptsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    kafkaconn.Options
		text string
	}{
		{"unknown mechanism", kafkaconn.Options{SASLMechanism: "GSSAPI", SASLUser: "u"}, `mechanism "GSSAPI"`},
		{"no user", kafkaconn.Options{SASLMechanism: "PLAIN"}, "user is empty"},
		{"password without mechanism", kafkaconn.Options{SASLPassword: "p"}, "no mechanism"},
		{"missing CA file", kafkaconn.Options{TLS: tlsconf.Client{CAFile: "/nonexistent/ca.pem"}}, "/nonexistent/ca.pem"},
		{"cert without key", kafkaconn.Options{TLS: tlsconf.Client{CertFile: "c.pem"}}, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.o.ClientOpts()
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("ClientOpts = %v, want an error containing %q", err, tc.text)
			}
		})
	}
}

// Package kafkaconn turns Sluice's Kafka connection settings (TLS and SASL)
// into franz-go client options. It is the one place those options are built:
// every Kafka client the binary makes (usage producer, rollup, restore,
// cluster membership and projection, config log, topic creation) appends
// the same Options.ClientOpts, so a broker that requires TLS or SASL is
// reached the same way by all of them.
//
// Check dials the brokers once at startup and turns the failures retrying
// cannot cure (rejected credentials, a certificate that does not verify, a
// TLS/plaintext mismatch) into one clear error, instead of clients that retry
// in the background forever.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-dev/sluice/internal/tlsconf"
)

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Options are the connection settings shared by every Kafka client. The zero
// value is a plaintext, unauthenticated connection.
type Options struct {
	// TLS encrypts the connections and, with a client certificate,
	// authenticates Sluice to the brokers (mTLS).
	TLS tlsconf.Client
	// SASLMechanism is "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (case
	// insensitive). Empty: no SASL. PLAIN sends the password as is: use it
	// over TLS only.
	SASLMechanism string
	// SASLUser and SASLPassword are the SASL credentials.
	SASLUser, SASLPassword string
}

// Enabled reports whether o differs from a plaintext, unauthenticated
// connection.
func (o Options) Enabled() bool { return o.TLS.On() || o.SASLMechanism != "" }

// ClientOpts returns the franz-go options that apply o. Its errors name the
// setting that is wrong (unreadable files, an unknown mechanism, missing
// credentials).
func (o Options) ClientOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	cfg, err := o.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("kafka TLS: %w", err)
	}
	if cfg != nil {
		opts = append(opts, kgo.Dialer(tlsDialer(cfg)))
	}
	m, err := o.mechanism()
	if err != nil {
		return nil, err
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (o Options) mechanism() (sasl.Mechanism, error) {
	name := strings.ToUpper(strings.TrimSpace(o.SASLMechanism))
	if name == "" {
		if o.SASLUser != "" || o.SASLPassword != "" {
			return nil, errors.New("kafka SASL: a user or password is set but no mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if o.SASLUser == "" {
		return nil, fmt.Errorf("kafka SASL %s: the user is empty", name)
	}
	switch name {
	case Plain:
		return plain.Auth{User: o.SASLUser, Pass: o.SASLPassword}.AsMechanism(), nil
	case ScramSHA256:
		return scram.Auth{User: o.SASLUser, Pass: o.SASLPassword}.AsSha256Mechanism(), nil
	case ScramSHA512:
		return scram.Auth{User: o.SASLUser, Pass: o.SASLPassword}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", o.SASLMechanism)
}

// dialTimeout bounds the TCP connection and the TLS handshake together, as
// franz-go's own dialer does.
const dialTimeout = 10 * time.Second

// tlsDialer dials like kgo.DialTLSConfig but marks handshake failures, so
// that a broker that accepts TCP and then never completes a handshake (it
// serves plaintext on the port) is told apart from one that is unreachable.
func tlsDialer(cfg *tls.Config) func(ctx context.Context, network, host string) (net.Conn, error) {
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				c.ServerName = h
			}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &handshakeError{addr: host, err: err}
		}
		return tc, nil
	}
}

// handshakeError is a TLS handshake that failed after the TCP connection was
// made.
type handshakeError struct {
	addr string
	err  error
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.addr, e.err)
}

func (e *handshakeError) Unwrap() error { return e.err }

// ErrAuth marks a connection the brokers refused: SASL credentials or a
// mechanism they reject.
var ErrAuth = errors.New("SASL authentication failed")

// ErrTLS marks a TLS session that could not be established: a certificate
// that does not verify, a client certificate the broker rejected, or one
// side speaking TLS to a plaintext other.
var ErrTLS = errors.New("TLS handshake failed")

// CheckTimeout bounds Check.
const CheckTimeout = 15 * time.Second

// Check connects to brokers with o and asks one of them for metadata. It
// returns an error wrapping ErrAuth or ErrTLS when the brokers answer but
// refuse the connection, and nil otherwise, including when no broker can be
// reached at all: the clients that follow retry that case on their own and
// report it in their own terms.
func Check(ctx context.Context, brokers []string, o Options) error {
	opts, err := o.ClientOpts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	return classify(cl.Ping(ctx), o)
}

// classify keeps the failures of Ping that retrying cannot cure.
func classify(err error, o Options) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("%w: %w", ErrAuth, err)
	case tlsconf.IsVerifyError(err):
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	var hs *handshakeError
	if errors.As(err, &hs) {
		return fmt.Errorf("%w (does the broker serve TLS on this port?): %w", ErrTLS, err)
	}
	var eof *kgo.ErrFirstReadEOF
	if errors.As(err, &eof) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// A broker that rejects SASL credentials, or gets TLS where it
		// expects plaintext (or the reverse), closes the connection
		// before its first answer.
		switch {
		case o.SASLMechanism != "":
			return fmt.Errorf("%w (the broker closed the connection while authenticating %s as %q; check the user, password and mechanism, and --kafka-tls): %w",
				ErrAuth, strings.ToUpper(o.SASLMechanism), o.SASLUser, err)
		case o.TLS.On():
			return fmt.Errorf("%w (the broker closed the connection: does it serve TLS on this port?): %w", ErrTLS, err)
		default:
			return fmt.Errorf("%w (the broker closed the connection before answering: does it require TLS or SASL?): %w", ErrAuth, err)
		}
	}
	return nil
}

// Package tlsconf builds the crypto/tls configurations of Sluice's
// connections from PEM files: the client side of Kafka, ClickHouse and the
// forwarding between API nodes, and the server side of the HTTP listeners.
//
// A client configuration verifies the server's certificate chain and name
// unless InsecureSkipVerify is set; the CA file replaces the system pool (a
// private CA is the usual case for managed Kafka and self-hosted
// ClickHouse). Files are read once, when the configuration is built, so a
// missing or malformed file is a startup error naming the file.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Client describes the TLS side of an outgoing connection. Its zero value is
// "no TLS".
type Client struct {
	// Enabled turns TLS on. Setting any file or ServerName also turns it on.
	Enabled bool
	// CAFile is a PEM bundle of the certificate authorities to trust.
	// Default: the system pool.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key, for
	// servers that authenticate clients by certificate (mTLS). Both or
	// neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry. Default:
	// the host of the address dialled.
	ServerName string
	// InsecureSkipVerify accepts any server certificate: encryption without
	// authentication, for tests only.
	InsecureSkipVerify bool
}

// On reports whether c asks for TLS at all.
func (c Client) On() bool {
	return c.Enabled || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.InsecureSkipVerify
}

// Config returns the tls.Config c describes, or nil when c asks for no TLS.
func (c Client) Config() (*tls.Config, error) {
	if !c.On() {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if c.CAFile != "" {
		pool, err := LoadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate file and its key file")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadPool reads a PEM bundle of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// Server returns the configuration of a listener serving the certificate in
// certFile (PEM, the chain after the leaf) with the key in keyFile.
func Server(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a TLS listener needs both a certificate file and a key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// IsVerifyError reports whether err is a failure to establish a TLS session
// that retrying will not cure: a certificate that does not verify, a peer
// that rejected ours, or a peer that does not speak TLS at all.
func IsVerifyError(err error) bool {
	if err == nil {
		return false
	}
	var (
		verr   *tls.CertificateVerificationError
		unk    x509.UnknownAuthorityError
		host   x509.HostnameError
		inv    x509.CertificateInvalidError
		alert  tls.AlertError
		record tls.RecordHeaderError
	)
	if errors.As(err, &verr) || errors.As(err, &unk) || errors.As(err, &host) || errors.As(err, &inv) ||
		errors.As(err, &alert) || errors.As(err, &record) {
		return true
	}
	// crypto/tls reports an alert from the peer (a rejected or missing
	// client certificate) as a net.OpError with this Op.
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// Package tlstest writes a throwaway certificate authority with a server and
// a client certificate for tests of TLS connections.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are PEM files in a test's temporary directory.
type Files struct {
	// CA is the certificate of the authority that signed Server and Client.
	CA string
	// ServerCert and ServerKey: a server certificate for localhost and
	// 127.0.0.1.
	ServerCert, ServerKey string
	// ClientCert and ClientKey: a client certificate (CN "sluice").
	ClientCert, ClientKey string
	// Pool holds CA.
	Pool *x509.CertPool
}

// ServerConfig returns a listener configuration serving ServerCert.
func (f Files) ServerConfig(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// New creates a CA and certificates signed by it under t.TempDir().
func New(t testing.TB) Files {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caDER := newCert(t, "sluice test CA", nil, nil, true, nil)
	f := Files{
		CA:         write(t, dir, "ca.pem", "CERTIFICATE", caDER),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
		Pool:       x509.NewCertPool(),
	}
	f.Pool.AddCert(caCert)
	for _, c := range []struct {
		cn, cert, key string
		usage         x509.ExtKeyUsage
	}{
		{"localhost", f.ServerCert, f.ServerKey, x509.ExtKeyUsageServerAuth},
		{"sluice", f.ClientCert, f.ClientKey, x509.ExtKeyUsageClientAuth},
	} {
		key, _, der := newCert(t, c.cn, caCert, caKey, false, []x509.ExtKeyUsage{c.usage})
		write(t, dir, filepath.Base(c.cert), "CERTIFICATE", der)
		kb, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, filepath.Base(c.key), "PRIVATE KEY", kb)
	}
	return f
}

func newCert(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool, usage []x509.ExtKeyUsage) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else if cn == "localhost" {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func write(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

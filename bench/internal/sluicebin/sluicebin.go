// Package sluicebin owns what the benchmark commands under bench/ need to
// run `sluice` processes: the binary, built from this checkout unless one is
// given, and loopback addresses to listen on.
package sluicebin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// Build returns bin when it is set; otherwise it builds ./cmd/sluice (run
// from the repository's root) into dir and returns that path.
func Build(bin, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/sluice").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin, nil
}

// FreeAddr returns a loopback address (127.0.0.1:port) nothing listens on
// now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts bin with args, its output going to the file logPath; the
// caller stops it (Interrupt, then Wait).
func Start(bin, logPath string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return cmd, nil
}

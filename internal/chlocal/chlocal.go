// Package chlocal runs a local ClickHouse server as a child process for tests
// and `sluice dev`.
//
// It writes a small XML configuration under a data directory (the same shape
// as deploy/clickhouse/start.sh), picks free loopback ports, starts the
// installed clickhouse-server binary, waits until GET /ping answers and stops
// it with SIGTERM. The data lives in the directory, so a server started again
// on the same directory sees the tables and rows of the previous run.
package chlocal

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotInstalled is returned (wrapped) by Start when no clickhouse-server
// binary can be found.
var ErrNotInstalled = errors.New("clickhouse-server not found: apt-get install -y clickhouse-server clickhouse-client")

// Options configure Start. The zero value of every field but Dir is usable.
type Options struct {
	// Dir holds the configuration, data, logs and pid file. Required. It is
	// created if missing and kept on Stop.
	Dir string
	// Binary is the server executable. Default: $SLUICE_CLICKHOUSE_SERVER, then
	// clickhouse-server on PATH, then /usr/bin/clickhouse-server.
	Binary string
	// TCPPort and HTTPPort are the native and HTTP ports on 127.0.0.1. Zero
	// picks a free port.
	TCPPort, HTTPPort int
	// StartTimeout bounds the wait for /ping. Default 30s.
	StartTimeout time.Duration
	// Stderr, if set, receives the server's stdout and stderr.
	Stderr io.Writer
	// TLSCert and TLSKey, when set, are the PEM certificate and key of a
	// TLS native port (tcp_port_secure) on a free port: SecureAddr.
	TLSCert, TLSKey string
	// Password, when set, is required of the default user (on every port).
	Password string
}

// Server is a running local ClickHouse server.
type Server struct {
	dir      string
	tcpPort  int
	httpPort int
	secure   int
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
}

// fallbackBinary is where Debian installs the server; a variable for tests.
var fallbackBinary = "/usr/bin/clickhouse-server"

// FindBinary returns the clickhouse-server executable Start would use, or an
// error wrapping ErrNotInstalled.
func FindBinary(explicit string) (string, error) {
	cands := []string{explicit, os.Getenv("SLUICE_CLICKHOUSE_SERVER")}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, fallbackBinary)
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", ErrNotInstalled
}

// Start writes the configuration under opts.Dir and starts the server. It
// returns once the server answers /ping, or an error that includes the tail of
// the server's error log.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("chlocal: Options.Dir is required")
	}
	bin, err := FindBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("chlocal: %w", err)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	// A free port found now may be taken before the server binds it; retry a
	// few times with fresh ports when the caller did not fix them.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(ctx, bin, dir, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if opts.TCPPort != 0 && opts.HTTPPort != 0 || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, bin, dir string, opts Options) (*Server, error) {
	tcp, http, inter, secure := opts.TCPPort, opts.HTTPPort, 0, 0
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	if tcp == 0 {
		tcp = ports[0]
	}
	if http == 0 {
		http = ports[1]
	}
	inter = ports[2]
	if opts.TLSCert != "" {
		secure = ports[3]
	}
	if err := writeConfig(dir, tcp, http, inter, secure, opts); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	if opts.Stderr != nil {
		cmd.Stdout, cmd.Stderr = opts.Stderr, opts.Stderr
	}
	// Own process group, so a terminal's ^C goes to us and we stop the server
	// cleanly; and a SIGTERM if this process dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("chlocal: start %s: %w", bin, err)
	}
	s := &Server{dir: dir, tcpPort: tcp, httpPort: http, secure: secure, cmd: cmd, done: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); close(s.done) }()
	_ = os.WriteFile(filepath.Join(dir, "server.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)

	deadline := time.Now().Add(opts.StartTimeout)
	for {
		if s.ping() == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("chlocal: clickhouse-server exited during startup (%v); log tail:\n%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("chlocal: waiting for clickhouse-server: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("chlocal: clickhouse-server did not answer /ping within %v; log tail:\n%s", opts.StartTimeout, s.logTail())
		}
	}
}

func (s *Server) ping() error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)) + "/ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log", "clickhouse-server.err.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Addr is the native protocol address, "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort)) }

// SecureAddr is the TLS native protocol address, "127.0.0.1:port", or ""
// without Options.TLSCert.
func (s *Server) SecureAddr() string {
	if s.secure == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.secure))
}

// HTTPAddr is the HTTP address, "127.0.0.1:port".
func (s *Server) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)) }

// TCPPort is the native protocol port.
func (s *Server) TCPPort() int { return s.tcpPort }

// HTTPPort is the HTTP port.
func (s *Server) HTTPPort() int { return s.httpPort }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 20 seconds for the server to exit, then
// kills it. It is safe to call more than once.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return errors.New("chlocal: clickhouse-server ignored SIGTERM for 20s; killed")
	}
}

// Kill stops the server with SIGKILL (for crash tests) and waits for it.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("chlocal: find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WriteConfig writes config.xml and users.xml for a server on 127.0.0.1 with
// its data under dir. deploy/clickhouse/start.sh writes the same shape.
func WriteConfig(dir string, tcpPort, httpPort, interPort int) error {
	return writeConfig(dir, tcpPort, httpPort, interPort, 0, Options{})
}

// writeConfig writes the configuration, with a TLS native port on
// securePort when it is not zero and the default user's password.
func writeConfig(dir string, tcpPort, httpPort, interPort, securePort int, opts Options) error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("chlocal: %w", err)
		}
	}
	var b bytes.Buffer
	r := strings.NewReplacer(
		"{DIR}", xmlEscape(dir),
		"{TCP}", strconv.Itoa(tcpPort),
		"{HTTP}", strconv.Itoa(httpPort),
		"{INTER}", strconv.Itoa(interPort),
	)
	conf := r.Replace(configXML)
	if securePort != 0 {
		// verificationMode none: the server does not ask for client
		// certificates; clients verify the server's.
		conf = strings.Replace(conf, "</yandex>", "    <tcp_port_secure>"+strconv.Itoa(securePort)+`</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>`+xmlEscape(opts.TLSCert)+`</certificateFile>
            <privateKeyFile>`+xmlEscape(opts.TLSKey)+`</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>`, 1)
	}
	b.WriteString(conf)
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chlocal: %w", err)
	}
	users := strings.Replace(usersXML, "<password></password>", "<password>"+xmlEscape(opts.Password)+"</password>", 1)
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o600); err != nil {
		return fmt.Errorf("chlocal: %w", err)
	}
	return nil
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xmlEscapeTo(&b, s)
	return b.String()
}

func xmlEscapeTo(w *bytes.Buffer, s string) error {
	for _, r := range s {
		switch r {
		case '&':
			w.WriteString("&amp;")
		case '<':
			w.WriteString("&lt;")
		case '>':
			w.WriteString("&gt;")
		case '"':
			w.WriteString("&quot;")
		default:
			w.WriteRune(r)
		}
	}
	return nil
}

// The root element <yandex> is what 18.16 requires; current releases still
// accept it. Keep in sync with deploy/clickhouse/start.sh.
const configXML = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{DIR}/log/clickhouse-server.log</log>
        <errorlog>{DIR}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{TCP}</tcp_port>
    <http_port>{HTTP}</http_port>
    <interserver_http_port>{INTER}</interserver_http_port>
    <path>{DIR}/data/</path>
    <tmp_path>{DIR}/tmp/</tmp_path>
    <user_files_path>{DIR}/user_files/</user_files_path>
    <format_schema_path>{DIR}/format_schemas/</format_schema_path>
    <users_config>{DIR}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
`

const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`

// ConfiguredAddr returns the native-protocol address of the server whose
// configuration Start wrote under dir, whether or not it runs. An error
// wrapping os.ErrNotExist means no server was ever started there.
func ConfiguredAddr(dir string) (string, error) {
	path := filepath.Join(dir, "config.xml")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var cfg struct {
		ListenHost string `xml:"listen_host"`
		TCPPort    int    `xml:"tcp_port"`
	}
	if err := xml.Unmarshal(b, &cfg); err != nil || cfg.TCPPort <= 0 {
		return "", fmt.Errorf("%s has no valid tcp_port (%v)", path, err)
	}
	host := cfg.ListenHost
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(cfg.TCPPort)), nil
}

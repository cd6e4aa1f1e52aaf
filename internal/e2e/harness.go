package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
)

// UsageTopic is the usage topic the harness's broker creates.
const UsageTopic = event.Topic

// Build compiles the sluice command into dir and returns the binary's path.
// It must run inside the module (go test's working directory is).
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "sluice")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/sluice-dev/sluice/cmd/sluice")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build sluice: %w\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Broker is a one-node kfake broker on a fixed loopback port with its log in
// a directory, so that Stop and Start simulate an outage: clients see the
// port refuse connections, and the broker comes back with every record and
// committed offset it had.
type Broker struct {
	dir        string
	port       int
	partitions int32

	mu sync.Mutex
	c  *kfake.Cluster
}

// StartBroker starts a broker keeping its data under dir, with the usage
// topic created with the given partitions on first start.
func StartBroker(dir string, partitions int32) (*Broker, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	b := &Broker{dir: dir, port: port, partitions: partitions}
	if err := b.Start(); err != nil {
		return nil, err
	}
	return b, nil
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// Start (re)starts a stopped broker on the same port and directory. Binding
// the port is retried for a few seconds in case the old listener lingers.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ {
		var c *kfake.Cluster
		c, err = kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.Ports(b.port),
			kfake.DataDir(b.dir),
			kfake.SeedTopics(b.partitions, UsageTopic),
		)
		if err == nil {
			b.c = c
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("start kfake broker on port %d: %w", b.port, err)
}

// Stop shuts the broker down; its log stays in the directory.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

// EndOffsets returns the usage topic's end offset per partition.
func (b *Broker) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, UsageTopic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	out := make(map[int32]int64)
	var firstErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil && firstErr == nil {
			firstErr = o.Err
		}
		out[o.Partition] = o.Offset
	})
	if firstErr != nil {
		return nil, fmt.Errorf("list end offsets: %w", firstErr)
	}
	return out, nil
}

// NodeOptions describe one `sluice serve` process.
type NodeOptions struct {
	Bin        string // the sluice binary (Build)
	Roles      string // "api", "rollup", ...
	Brokers    string // host:port,...
	ClickHouse string // native host:port
	Listen     string // the API's address (also used for /metrics)
	DataDir    string // the node's own data dir (spool, locks)
	Name       string // --node: also the rollup's static member id
	Config     string // --config file, or ""
	Extra      []string
	Log        io.Writer // receives the process's stdout and stderr; nil: discarded
}

// Node is a running `sluice serve` child process.
type Node struct {
	opts NodeOptions
	cmd  *exec.Cmd
	done chan struct{}
	out  *watchWriter
}

// rollupRunning is the line the rollup role logs once its consumer starts.
const rollupRunning = "rollup role running"

// StartNode starts the process; WaitReady waits until it serves.
func StartNode(o NodeOptions) (*Node, error) {
	args := []string{"serve", "--roles", o.Roles, "--kafka", o.Brokers, "--data-dir", o.DataDir, "--node", o.Name}
	if o.ClickHouse != "" {
		args = append(args, "--clickhouse", o.ClickHouse)
	}
	if o.Listen != "" {
		args = append(args, "--listen", o.Listen)
	}
	if o.Config != "" {
		args = append(args, "--config", o.Config)
	}
	args = append(args, o.Extra...)
	cmd := exec.Command(o.Bin, args...)
	w := &watchWriter{dst: o.Log, want: rollupRunning}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sluice %s: %w", o.Roles, err)
	}
	n := &Node{opts: o, cmd: cmd, done: make(chan struct{}), out: w}
	go func() { cmd.Wait(); close(n.done) }()
	return n, nil
}

// Pid is the process id.
func (n *Node) Pid() int { return n.cmd.Process.Pid }

// Done is closed when the process has exited.
func (n *Node) Done() <-chan struct{} { return n.done }

// WaitReady waits until an API node's /status answers 200 (config loaded,
// counters restored) or a rollup node logged that its consumer runs.
func (n *Node) WaitReady(ctx context.Context) error {
	api := strings.Contains(n.opts.Roles, "api") || strings.Contains(n.opts.Roles, "all")
	for {
		if api {
			if code, _, err := Get(ctx, "http://"+n.opts.Listen+"/status"); err == nil && code == 200 {
				return nil
			}
		} else if n.out.seen() {
			return nil
		}
		select {
		case <-n.done:
			return fmt.Errorf("sluice %s (pid %d) exited before it was ready: %v", n.opts.Roles, n.Pid(), n.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("sluice %s (pid %d) not ready: %w", n.opts.Roles, n.Pid(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Stop sends SIGTERM and waits up to timeout for a graceful exit, then kills.
// It returns an error if the process had to be killed or exited non-zero.
func (n *Node) Stop(timeout time.Duration) error {
	select {
	case <-n.done:
	default:
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(timeout):
			n.Kill()
			return fmt.Errorf("sluice %s did not stop within %v: killed", n.opts.Roles, timeout)
		}
	}
	if st := n.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("sluice %s exited: %v", n.opts.Roles, st)
	}
	return nil
}

// watchWriter forwards output and remembers whether a line contained want.
type watchWriter struct {
	mu   sync.Mutex
	dst  io.Writer
	want string
	tail []byte
	hit  bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.hit {
		w.tail = append(w.tail, p...)
		if bytes.Contains(w.tail, []byte(w.want)) {
			w.hit, w.tail = true, nil
		} else if i := bytes.LastIndexByte(w.tail, '\n'); i >= 0 {
			w.tail = append(w.tail[:0], w.tail[i+1:]...)
		}
	}
	if w.dst != nil {
		w.dst.Write(p)
	}
	return len(p), nil
}

func (w *watchWriter) seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hit
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// Get fetches url and returns the status code and body.
func Get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Scrape reads the Prometheus text at http://listen/metrics into a map from
// the series (name plus labels, as printed) to its value.
func Scrape(ctx context.Context, listen string) (map[string]float64, error) {
	code, body, err := Get(ctx, "http://"+listen+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", listen, err)
	}
	if code != 200 {
		return nil, fmt.Errorf("scrape %s: status %d", listen, code)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// WaitFlushed waits until the API node at listen holds no event that Kafka
// has not acknowledged: nothing in flight, an empty spool, twice in a row.
func WaitFlushed(ctx context.Context, listen string) error {
	calm := 0
	for {
		m, err := Scrape(ctx, listen)
		if err == nil && m["sluice_events_inflight"] == 0 && m["sluice_spool_bytes"] == 0 {
			calm++
			if calm == 2 {
				return nil
			}
		} else {
			calm = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("producer of %s not flushed (last scrape: %v, inflight %v, spool bytes %v): %w",
				listen, err, m["sluice_events_inflight"], m["sluice_spool_bytes"], ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitRolledUp waits until every rollup table in ClickHouse at chAddr holds
// every record the broker has (the offset markers reach the end offsets).
// Call it after WaitFlushed, when no more events are coming.
func WaitRolledUp(ctx context.Context, b *Broker, chAddr string) error {
	ends, err := b.EndOffsets(ctx)
	if err != nil {
		return err
	}
	var last string
	for {
		last, err = rolledUp(ctx, chAddr, ends)
		if err == nil && last == "" {
			return nil
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollup did not catch up: %s: %w", last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rolledUp returns "" when ClickHouse's resume offsets reach ends, else what
// is missing.
func rolledUp(ctx context.Context, chAddr string, ends map[int32]int64) (string, error) {
	conn, err := chschema.Connect(ctx, chschema.ConnOptions{Addr: chAddr, User: "default"})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	have, err := chschema.ResumeOffsets(ctx, conn, chschema.DefaultDatabase)
	if err != nil {
		return "", err
	}
	var missing []string
	for p, end := range ends {
		if end > 0 && have[p] < end {
			missing = append(missing, fmt.Sprintf("partition %d at %d of %d", p, have[p], end))
		}
	}
	return strings.Join(missing, ", "), nil
}

// TailFile returns the last n bytes of a file, for failure messages.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

// The cluster tests run several `sluice serve --roles api` processes and a
// rollup process on one kfake broker and one ClickHouse, and hammer them
// with authreps spread over the nodes.

const (
	clusterPartitions = 12
	clusterMax        = 1000
	clusterClients    = 32
)

// clusterConfig has one exact and one local plan of clusterMax hits a
// minute, and applications on each.
const clusterConfig = `tenants:
  - id: acme
    admin_token: adm-cluster-limits
    services:
      - id: svc
        tokens: [st-cluster-limits]
        metrics: [{name: hits}]
        plans:
          - id: exact
            limits: [{metric: hits, period: minute, max: 1000}]
          - id: local
            limits: [{metric: hits, period: minute, max: 1000, consistency: local}]
        applications:
%s`

func clusterApps() string {
	var b strings.Builder
	for i := range 8 {
		fmt.Fprintf(&b, "          - {id: x%d, plan: exact, user_key: uk-x%d}\n", i, i)
	}
	for i := range 2 {
		fmt.Fprintf(&b, "          - {id: l%d, plan: local, user_key: uk-l%d}\n", i, i)
	}
	return b.String()
}

type clusterHarness struct {
	t       *testing.T
	brokers string
	chAddr  string
	conn    driver.Conn
	cfgFile string
}

type apiNode struct {
	name, listen, dir string
	p                 *process
}

func newClusterHarness(t *testing.T) *clusterHarness {
	t.Helper()
	brokers := startKfake(t, kfake.SeedTopics(clusterPartitions, "sluice.usage"))
	ch, conn := chtest.Start(t)
	if err := migrate(context.Background(), chAuth{User: "default"}, ch.Addr(), "sluice"); err != nil {
		t.Fatal(err)
	}
	h := &clusterHarness{t: t, brokers: brokers, chAddr: ch.Addr(), conn: conn,
		cfgFile: writeConfig(t, fmt.Sprintf(clusterConfig, clusterApps()))}
	startProcess(t, "rollup", "serve", "--roles", "rollup", "--kafka", brokers, "--clickhouse", ch.Addr(),
		"--listen", freeAddr(t), "--data-dir", t.TempDir(), "--node", "rollup")
	return h
}

// startAPI starts an API node and waits until it is ready.
func (h *clusterHarness) startAPI(name string, extra ...string) *apiNode {
	h.t.Helper()
	n := &apiNode{name: name, listen: freeAddr(h.t), dir: h.t.TempDir()}
	h.restartAPI(n, extra...)
	return n
}

// restartAPI starts n's process (again, over the same data dir).
func (h *clusterHarness) restartAPI(n *apiNode, extra ...string) {
	h.t.Helper()
	args := append([]string{"serve", "--roles", "api", "--kafka", h.brokers, "--clickhouse", h.chAddr,
		"--listen", n.listen, "--data-dir", n.dir, "--node", n.name, "--config", h.cfgFile}, extra...)
	n.p = startProcess(h.t, n.name, args...)
	waitReady(h.t, n.listen)
}

var ownedRE = regexp.MustCompile(`"owned":\[([0-9,]*)\]`)

// owned returns the partitions n reports owning, nil if it does not answer.
func owned(n *apiNode) []int {
	resp, err := http.Get("http://" + n.listen + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := ownedRE.FindSubmatch(b)
	if m == nil || len(m[1]) == 0 {
		return []int{}
	}
	var ps []int
	for _, s := range strings.Split(string(m[1]), ",") {
		p, _ := strconv.Atoi(s)
		ps = append(ps, p)
	}
	return ps
}

// settle waits until the nodes own every partition exactly once, and
// returns the owner of each partition.
func (h *clusterHarness) settle(nodes ...*apiNode) map[int]*apiNode {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		owner := map[int]*apiNode{}
		dup := false
		for _, n := range nodes {
			for _, p := range owned(n) {
				if owner[p] != nil {
					dup = true
				}
				owner[p] = n
			}
		}
		if !dup && len(owner) == clusterPartitions {
			return owner
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("partitions not settled over %d nodes within 60s: %d owned, duplicates %v", len(nodes), len(owner), dup)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func appPartition(app string) int {
	return int(kafka.Partition(event.Key(nil, "svc", app), clusterPartitions))
}

// scrape returns the sum of a metric's series on n's /metrics.
func scrape(t *testing.T, n *apiNode, name string) float64 {
	t.Helper()
	code, body := get(t, "http://"+n.listen+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics of %s = %d", n.name, code)
	}
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// load drives authreps of hits=1 for some applications over a changing set
// of nodes and tallies the answers.
type load struct {
	nodes atomic.Pointer[[]*apiNode]
	pace  time.Duration // per client between calls; 0 is as fast as possible

	mu       sync.Mutex
	admitted map[string]map[string]int // app -> minute window start -> 200s
	denied   map[string]int
	unknown  int // 5xx or a broken connection: the call may or may not have counted
	refused  int // no connection: the call never reached a node
}

func newLoad(nodes []*apiNode, pace time.Duration) *load {
	l := &load{pace: pace, admitted: map[string]map[string]int{}, denied: map[string]int{}}
	l.nodes.Store(&nodes)
	return l
}

var minuteStart = regexp.MustCompile(`period="minute"><period_start>([^<]+)</period_start>`)

// run calls until ctx ends, clients goroutines at once, each cycling over
// apps and the current nodes.
func (l *load) run(ctx context.Context, apps []string) {
	tr := &http.Transport{MaxIdleConnsPerHost: clusterClients, MaxIdleConns: 4 * clusterClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for c := range clusterClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ctx.Err() == nil; i++ {
				nodes := *l.nodes.Load()
				n := nodes[i%len(nodes)]
				app := apps[(i/len(nodes))%len(apps)]
				l.call(ctx, client, n, app)
				if l.pace > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(l.pace):
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (l *load) call(ctx context.Context, client *http.Client, n *apiNode, app string) {
	url := fmt.Sprintf("http://%s/transactions/authrep.xml?service_token=st-cluster-limits&service_id=svc&user_key=uk-%s&usage%%5Bhits%%5D=1", n.listen, app)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		if strings.Contains(err.Error(), "connection refused") {
			l.refused++
		} else {
			l.unknown++
		}
		l.mu.Unlock()
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.unknown++
	case resp.StatusCode == 200:
		m := minuteStart.FindSubmatch(body)
		if m == nil {
			l.unknown++
			return
		}
		w := l.admitted[app]
		if w == nil {
			w = map[string]int{}
			l.admitted[app] = w
		}
		w[string(m[1])]++
	case resp.StatusCode == 409:
		l.denied[app]++
	default:
		l.unknown++
	}
}

// total returns the 200s of app over all windows, and the largest window.
func (l *load) total(app string) (sum, most int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.admitted[app] {
		sum += n
		most = max(most, n)
	}
	return sum, most
}

// awaitMinuteRoom waits, if fewer than need remain in the current minute,
// for the next one, so that a phase stays within one minute window.
func awaitMinuteRoom(need time.Duration) {
	now := time.Now().UTC()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < need {
		time.Sleep(left + 100*time.Millisecond)
	}
}

// chUsage waits until ClickHouse's rollup of app's hits stops changing and
// is at least atLeast, and returns it.
func (h *clusterHarness) chUsage(app string, atLeast int) int {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last, stable := int64(-1), 0
	for {
		var sum int64
		row := h.conn.QueryRow(context.Background(),
			"SELECT toInt64(sum(value)) FROM sluice.usage_minute WHERE tenant_id = 'acme' AND service_id = 'svc' AND app_id = ? AND metric = 'hits'", app)
		if err := row.Scan(&sum); err != nil {
			h.t.Fatalf("read ClickHouse: %v", err)
		}
		if sum == last && sum >= int64(atLeast) {
			if stable++; stable >= 5 {
				return int(sum)
			}
		} else {
			stable = 0
		}
		last = sum
		if time.Now().After(deadline) {
			h.t.Fatalf("ClickHouse holds %d hits for %s, want at least %d (not settled within 60s)", sum, app, atLeast)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterExactLimit: three API processes and a rollup on one broker; a
// limit of 1,000 a minute hammered by 32 clients spread over the nodes admits
// exactly 1,000, and ClickHouse holds exactly the admitted usage.
func TestClusterExactLimit(t *testing.T) {
	h := newClusterHarness(t)
	nodes := []*apiNode{h.startAPI("n1"), h.startAPI("n2"), h.startAPI("n3")}
	owner := h.settle(nodes...)
	apps := []string{"x0", "x1", "x2"}
	for _, a := range apps {
		t.Logf("app %s: partition %d owned by %s", a, appPartition(a), owner[appPartition(a)].name)
	}

	awaitMinuteRoom(30 * time.Second)
	l := newLoad(nodes, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.run(ctx, apps); close(done) }()
	// Keep hammering well past the limit: every app must see many denials.
	deadline := time.Now().Add(60 * time.Second)
	for {
		l.mu.Lock()
		enough := true
		for _, a := range apps {
			enough = enough && l.denied[a] >= 500
		}
		l.mu.Unlock()
		if enough || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done

	forwarded := 0.0
	for _, n := range nodes {
		forwarded += scrape(t, n, "sluice_cluster_forwarded_total")
	}
	if forwarded == 0 {
		t.Error("no call was forwarded: the calls did not spread over the owners")
	}
	for _, a := range apps {
		sum, most := l.total(a)
		l.mu.Lock()
		windows, denied := len(l.admitted[a]), l.denied[a]
		l.mu.Unlock()
		t.Logf("app %s: %d admitted in %d window(s), %d denied", a, sum, windows, denied)
		if most != clusterMax || sum != clusterMax*windows {
			t.Errorf("app %s: admitted %v per window, want exactly %d in each", a, l.admitted[a], clusterMax)
		}
		if got := h.chUsage(a, sum); got != sum {
			t.Errorf("app %s: ClickHouse holds %d hits, clients were admitted %d", a, got, sum)
		}
	}
	if l.unknown > 0 || l.refused > 0 {
		t.Errorf("%d calls failed and %d were refused; want none in a steady cluster", l.unknown, l.refused)
	}
}

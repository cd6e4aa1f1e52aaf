package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/alerts"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/internal/kafkatest"
)

const alertsSecret = "whsec-0123456789abcdef"

// alertsConfig: one tenant with a webhook, a service alerting at 50, 80,
// 90, 100 and 120 %, an exact and a local plan of 10 hits a minute.
const alertsConfig = `tenants:
  - id: acme
    admin_token: adm-alerts-cluster
    query_tokens: [q-alerts-cluster]
    webhook_url: %q
    webhook_secret: %q
    services:
      - id: svc
        tokens: [st-alerts-cluster]
        metrics: [{name: hits}]
        alert_thresholds: [50, 80, 90, 100, 120]
        plans:
          - id: exact
            limits: [{metric: hits, period: minute, max: 10}]
          - id: local
            limits: [{metric: hits, period: minute, max: 10, consistency: local}]
        applications:
          - {id: ex, plan: exact, user_key: uk-ex}
          - {id: lo, plan: local, user_key: uk-lo}
`

// receiver is a webhook endpoint that refuses the first failFirst attempts
// of every alert with 503 and accepts the next ones.
type receiver struct {
	failFirst int

	mu        sync.Mutex
	attempts  map[string]int            // alert id -> attempts seen
	accepted  map[string][]alerts.Alert // alert id -> bodies answered 200
	badSigned int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !alerts.Verify([]byte(alertsSecret), body, req.Header.Get(alerts.SignatureHeader)) {
		r.badSigned++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var a alerts.Alert
	if err := json.Unmarshal(body, &a); err != nil || a.Valid() != nil || req.Header.Get(alerts.IDHeader) != a.ID {
		r.badSigned++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.attempts[a.ID]++
	if n, _ := strconv.Atoi(req.Header.Get(alerts.AttemptHeader)); n != r.attempts[a.ID] {
		r.badSigned++
	}
	if r.attempts[a.ID] <= r.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.accepted[a.ID] = append(r.accepted[a.ID], a)
	w.WriteHeader(http.StatusNoContent)
}

// TestAlertsTwoNodes: two API processes and a rollup+query process on one
// broker; an application on an exact limit and one on a local limit are
// driven from 0 to 120 % of their minute limit through calls spread over
// both nodes. Every node sees every crossing (its own calls, the other
// node's through its projection) and writes it to the alerts topic; the
// rollup keeps one copy of each: every threshold is delivered to the
// webhook exactly once (after two refused attempts, with a valid
// signature) and listed once by GET /api/v1/alerts. Halfway, the rollup
// stops and an API node restarts, replaying (and reporting again) the
// crossings the rollup has not stored: still once each.
func TestAlertsTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse, a broker and three sluice processes")
	}
	rcv := &receiver{failFirst: 2, attempts: map[string]int{}, accepted: map[string][]alerts.Alert{}}
	hook := httptest.NewServer(rcv)
	defer hook.Close()

	b := kafkatest.Start(t)
	brokers := strings.Join(b.Addrs, ",")
	common := []string{"--topic", b.Topic(t, event.Topic, clusterPartitions), "--alerts-topic", b.Topic(t, alerts.Topic, 4),
		"--config-topic", kafkatest.UniqueName("sluice.config"), "--region", strings.ReplaceAll(kafkatest.UniqueName("r"), ".", "-")}
	ch, _ := chtest.Start(t)
	if err := migrate(context.Background(), chschema.ConnOptions{Addr: ch.Addr()}, "sluice"); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeConfig(t, fmt.Sprintf(alertsConfig, hook.URL+"/hooks/sluice?tok=x", alertsSecret))
	queryListen := freeAddr(t)
	rollupArgs := append([]string{"serve", "--roles", "rollup,query", "--kafka", brokers, "--clickhouse", ch.Addr(),
		"--listen", freeAddr(t), "--query-listen", queryListen, "--data-dir", t.TempDir(), "--node", "rollup"}, common...)
	rollup := startProcess(t, "rollup", rollupArgs...)
	var nodes []*apiNode
	apiArgs := func(n *apiNode) []string {
		return append([]string{"serve", "--roles", "api", "--kafka", brokers, "--clickhouse", ch.Addr(),
			"--listen", n.listen, "--data-dir", n.dir, "--node", n.name, "--config", cfgFile}, common...)
	}
	for _, name := range []string{"a1", "a2"} {
		n := &apiNode{name: name, listen: freeAddr(t), dir: t.TempDir()}
		n.p = startProcess(t, name, apiArgs(n)...)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		waitReady(t, n.listen)
	}
	h := &clusterHarness{t: t}
	h.settle(nodes...)

	// One minute window for the whole drive.
	awaitMinuteRoom(45 * time.Second)
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(n *apiNode, method, path string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+n.listen+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s on %s: %v", method, path, n.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Phase 1: to 90 %, with the rollup storing and delivering.
	authreps := func(app string, admitted, upTo int) {
		t.Helper()
		for i := 0; admitted < upTo; i++ {
			if i >= 40 {
				t.Fatalf("%s: only %d of 10 authreps admitted in 40 calls", app, admitted)
			}
			code := call(nodes[i%2], "GET", "/transactions/authrep.xml?service_token=st-alerts-cluster&service_id=svc&user_key=uk-"+app+"&usage%5Bhits%5D=1")
			switch code {
			case 200:
				admitted++
			case 409:
				time.Sleep(50 * time.Millisecond) // a local limit: the other node's calls arrive
			default:
				t.Fatalf("%s: authrep answered %d", app, code)
			}
		}
	}
	for _, app := range []string{"ex", "lo"} {
		authreps(app, 0, 9)
	}
	waitDelivered := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			rcv.mu.Lock()
			got := len(rcv.accepted)
			rcv.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d alerts delivered within 30s, want %d", got, n)
			}
		}
	}
	waitDelivered(6) // 50, 80, 90 of each app

	// Phase 2: the rollup stops; to 120 % (the usage and the alerts wait
	// in Kafka); a1 restarts and replays that usage, writing its crossings
	// again; the rollup comes back and keeps one copy of each.
	rollup.stop(30 * time.Second)
	for _, app := range []string{"ex", "lo"} {
		authreps(app, 9, 10)
		// 120 %: reports are counted whatever the limit.
		q := url.Values{"service_token": {"st-alerts-cluster"}, "service_id": {"svc"},
			"transactions[0][user_key]": {"uk-" + app}, "transactions[0][usage][hits]": {"2"}}
		if code := call(nodes[1], "POST", "/transactions.xml?"+q.Encode()); code != 202 {
			t.Fatalf("%s: report answered %d", app, code)
		}
	}
	// Wait for both nodes' projections to see the other's last usage.
	var sentBefore float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if sentBefore = scrape(t, nodes[0], "sluice_alerts_sent_total") + scrape(t, nodes[1], "sluice_alerts_sent_total"); sentBefore >= 20 {
			break
		}
	}
	nodes[0].p.stop(30 * time.Second)
	nodes[0].p = startProcess(t, nodes[0].name, apiArgs(nodes[0])...)
	waitReady(t, nodes[0].listen)
	h.settle(nodes...)
	startProcess(t, "rollup", rollupArgs...) // stopped when the test ends
	waitDelivered(10)

	want := map[string]bool{}
	for _, app := range []string{"ex", "lo"} {
		for _, th := range []int{50, 80, 90, 100, 120} {
			want[fmt.Sprintf("%s@%d", app, th)] = true
		}
	}
	delivered := func() map[string]int {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		got := map[string]int{}
		for _, as := range rcv.accepted {
			for _, a := range as {
				got[fmt.Sprintf("%s@%d", a.AppID, a.Threshold)]++
			}
		}
		return got
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(delivered()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // room for a copy that should not come
	got := delivered()
	for k := range want {
		if got[k] != 1 {
			t.Errorf("alert %s delivered %d times, want exactly once", k, got[k])
		}
	}
	for k, n := range got {
		if !want[k] {
			t.Errorf("unexpected alert %s delivered %d times", k, n)
		}
	}
	rcv.mu.Lock()
	for id, n := range rcv.attempts {
		if len(rcv.accepted[id]) == 1 && n != rcv.failFirst+1 {
			t.Errorf("alert %s: %d attempts, want %d (two refused, one accepted)", id, n, rcv.failFirst+1)
		}
	}
	if rcv.badSigned != 0 {
		t.Errorf("%d webhook calls had a bad signature, id or attempt header", rcv.badSigned)
	}
	for _, as := range rcv.accepted {
		a := as[0]
		if a.TenantID != "acme" || a.ServiceID != "svc" || a.Metric != "hits" || a.Period != "minute" || a.Max != 10 ||
			a.WindowEnd.Sub(a.WindowStart) != time.Minute || a.Value*100 < a.Max*int64(a.Threshold) {
			t.Errorf("alert fields: %+v", a)
		}
	}
	rcv.mu.Unlock()

	// Both nodes saw every crossing: the copies the rollup dropped. And a1,
	// restarted, replayed the usage the rollup had not stored (phase 2) and
	// wrote those four crossings again.
	if sentBefore != float64(2*len(want)) {
		t.Errorf("the nodes wrote %v alerts to the topic, want %d (each node sees each crossing once)", sentBefore, 2*len(want))
	}
	if replayed := scrape(t, nodes[0], "sluice_alerts_sent_total"); replayed != 4 {
		t.Errorf("a1 wrote %v alerts after its restart, want 4 (100 and 120 %% of both apps, replayed)", replayed)
	}

	// The query API lists each alert once.
	req, _ := http.NewRequest("GET", "http://"+queryListen+"/api/v1/alerts?service_id=svc", nil)
	req.Header.Set("Authorization", "Bearer q-alerts-cluster")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Alerts []struct {
			AppID     string `json:"app_id"`
			Threshold int    `json:"threshold"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/v1/alerts: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	var listed []string
	for _, a := range ans.Alerts {
		listed = append(listed, fmt.Sprintf("%s@%d", a.AppID, a.Threshold))
	}
	slices.Sort(listed)
	var wantList []string
	for k := range want {
		wantList = append(wantList, k)
	}
	slices.Sort(wantList)
	if !slices.Equal(listed, wantList) {
		t.Errorf("GET /api/v1/alerts lists %v, want %v", listed, wantList)
	}
}

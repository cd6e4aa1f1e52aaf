package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

// TestServeNodesShareConfig: two API nodes of one cluster (sluice serve with
// the default Kafka config log) converge: a change made through one node's
// admin API authorizes on the other, and a node started without a config
// file learns the whole configuration from the topic.
func TestServeNodesShareConfig(t *testing.T) {
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	cfgFile := writeConfig(t, `tenants:
  - id: acme
    admin_token: adm-cluster-test
    services:
      - id: svc
        tokens: [st-cluster]
        metrics: [{name: hits}]
        plans:
          - id: basic
            limits: [{metric: hits, period: minute, max: 100}]
        applications:
          - {id: app1, plan: basic, user_key: uk-one}
`)

	startNode := func(name string, extra ...string) string {
		listen := freeAddr(t)
		startServe(t, append([]string{"serve", "--roles", "api", "--kafka", brokers, "--listen", listen,
			"--data-dir", t.TempDir(), "--node", name}, extra...)...)
		waitReady(t, listen)
		return listen
	}
	a := startNode("a", "--config", cfgFile)
	b := startNode("b") // no config file: everything comes from the topic

	authorize := func(listen, userKey string) int {
		code, _ := get(t, fmt.Sprintf("http://%s/transactions/authorize.xml?service_token=st-cluster&service_id=svc&user_key=%s", listen, userKey))
		return code
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually("node b knows app1 from the topic", func() bool { return authorize(b, "uk-one") == 200 })
	if code := authorize(b, "uk-two"); code != 403 {
		t.Fatalf("unknown user_key on b = %d, want 403", code)
	}

	req, _ := http.NewRequest(http.MethodPut, "http://"+a+"/admin/api/v1/services/svc/applications/app2",
		strings.NewReader(`{"plan":"basic","user_key":"uk-two"}`))
	req.Header.Set("Authorization", "Bearer adm-cluster-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT app2 on node a = %d", resp.StatusCode)
	}
	eventually("node b authorizes app2 created on node a", func() bool { return authorize(b, "uk-two") == 200 })
}

// TestServeCreatesUsageTopic: on a broker without the usage topic (a fresh
// cluster), an API node creates it with --topic-partitions partitions before
// it reports ready, and its events land there.
func TestServeCreatesUsageTopic(t *testing.T) {
	brokers := startKfake(t)
	cfgFile := writeConfig(t, `tenants:
  - id: acme
    admin_token: adm-topic-test
    services:
      - id: svc
        tokens: [st-topic]
        metrics: [{name: hits}]
        plans: [{id: basic, limits: [{metric: hits, period: minute, max: 100}]}]
        applications: [{id: app1, plan: basic, user_key: uk-one}]
`)

	listen := freeAddr(t)
	errs := startServe(t, "serve", "--roles", "api", "--kafka", brokers, "--listen", listen,
		"--data-dir", t.TempDir(), "--config", cfgFile, "--topic", "usage.fresh", "--topic-partitions", "5")
	waitReady(t, listen)

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics("usage.fresh"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).ListTopics(context.Background(), "usage.fresh")
	if err != nil || md["usage.fresh"].Err != nil {
		t.Fatalf("usage topic after ready: %v, %v", err, md["usage.fresh"].Err)
	}
	if n := len(md["usage.fresh"].Partitions); n != 5 {
		t.Fatalf("usage topic has %d partitions, want 5 (--topic-partitions)", n)
	}
	if code, body := get(t, "http://"+listen+"/transactions/authrep.xml?service_token=st-topic&service_id=svc&user_key=uk-one&usage%5Bhits%5D=3"); code != 200 {
		t.Fatalf("authrep = %d %s", code, body)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	fs := cl.PollFetches(fctx)
	if err := fs.Err0(); err != nil {
		t.Fatalf("consume usage.fresh: %v (node stderr: %s)", err, errs.String())
	}
	if n := fs.NumRecords(); n != 1 {
		t.Fatalf("%d records on usage.fresh, want 1", n)
	}
}

// TestRollupNodeServesMetrics: a rollup-only node (no API listener) serves
// /metrics and /health on --listen, with the rollup's progress in it.
func TestRollupNodeServesMetrics(t *testing.T) {
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	ch, _ := chtest.Start(t)
	listen := freeAddr(t)
	errs := startServe(t, "serve", "--roles", "rollup", "--kafka", brokers,
		"--clickhouse", ch.Addr(), "--listen", listen, "--data-dir", t.TempDir(), "--node", "r1")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _ := get(t, "http://"+listen+"/health"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health of the rollup node not 200 within 60s; stderr: %s", errs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := get(t, "http://"+listen+"/metrics")
	if code != 200 || !strings.Contains(body, "sluice_rollup_events_total") {
		t.Fatalf("/metrics = %d, want the rollup's metrics:\n%s", code, body)
	}
	if code, _ := get(t, "http://"+listen+"/transactions/authrep.xml"); code != 404 {
		t.Fatalf("a rollup node answers the Service Management API: %d", code)
	}
}

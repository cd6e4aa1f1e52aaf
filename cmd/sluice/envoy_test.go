package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/internal/tlsconf/tlstest"
)

// TestEnvoyRateLimitService starts an API node with --envoy-config and
// checks the wiring end to end: ShouldRateLimit over gRPC on
// --grpc-listen, POST /json on --listen, the per-domain /metrics, the
// usage events on the usage topic, and the domain declared as a service of
// --envoy-tenant in the catalog.
func TestEnvoyRateLimitService(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	cfgFile := writeConfig(t, `tenants:
  - id: gw
    admin_token: adm-envoy-test
`)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte("domain: d\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	api, grpcAddr := freeAddr(t), freeAddr(t)
	startServe(t, "serve", "--roles", "api", "--kafka", brokers, "--listen", api, "--data-dir", t.TempDir(), "--config", cfgFile,
		"--node", "e1", "--envoy-config", dir, "--grpc-listen", grpcAddr, "--envoy-tenant", "gw", "--envoy-headers")
	waitReady(t, api)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := rlpb.NewRateLimitServiceClient(conn)
	req := &rlpb.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "u1"}}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, want := range []rlpb.RateLimitResponse_Code{rlpb.RateLimitResponse_OK, rlpb.RateLimitResponse_OK, rlpb.RateLimitResponse_OVER_LIMIT} {
		resp, err := c.ShouldRateLimit(ctx, req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.OverallCode != want || len(resp.ResponseHeadersToAdd) != 3 {
			t.Fatalf("call %d: %v, want %v with three x-ratelimit headers", i, resp, want)
		}
	}

	resp, err := http.Post("http://"+api+"/json", "application/json",
		strings.NewReader(`{"domain":"d","descriptors":[{"entries":[{"key":"user","value":"u2"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"overallCode":"OK"`) {
		t.Fatalf("POST /json: %d %s", resp.StatusCode, body)
	}

	_, metricsText := get(t, "http://"+api+"/metrics")
	for _, want := range []string{`sluice_envoy_calls_total{domain="d"} 4`, `sluice_envoy_over_limit_total{domain="d"} 1`, `sluice_envoy_active_values{domain="d"} 2`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The usage events: three authreps (u1, u1, u2) and one denial.
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(event.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	for len(got) < 4 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatal(err)
			}
			kind := map[event.Kind]string{event.KindAuthrep: "authrep", event.KindDenied: "denied"}[e.Kind]
			s := e.TenantID + "/" + e.ServiceID + "/" + e.AppID + "/" + kind
			if len(e.Usage) == 1 {
				s += "/" + e.Usage[0].Metric
			}
			got = append(got, s)
		})
	}
	if strings.Join(got, " ") != "gw/d/u1/authrep/user gw/d/u1/authrep/user gw/d/u1/denied gw/d/u2/authrep/user" {
		t.Fatalf("events %q", got)
	}

	// The domain is a service of the tenant, with its metric.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.NewRequest("GET", "http://"+api+"/admin/api/v1/services/d", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer adm-envoy-test")
		resp, err := http.DefaultClient.Do(r)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), `"user"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service d of tenant gw: %d %s", resp.StatusCode, b)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEnvoyRateLimitServiceTLS: with --tls-cert the gRPC listener serves
// TLS only, with the listeners' certificate.
func TestEnvoyRateLimitServiceTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	certs := tlstest.New(t)
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte("domain: d\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	api, grpcAddr := freeAddr(t), freeAddr(t)
	errs := startServe(t, "serve", "--roles", "api", "--kafka", brokers, "--listen", api, "--data-dir", t.TempDir(),
		"--node", "e2", "--envoy-config", dir, "--grpc-listen", grpcAddr, "--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey)
	req := &rlpb.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "u1"}}}}}
	call := func(creds grpc.DialOption) (*rlpb.RateLimitResponse, error) {
		conn, err := grpc.NewClient(grpcAddr, creds)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return rlpb.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, req)
	}
	secure := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: certs.Pool}))
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := call(secure)
		if err == nil {
			if resp.OverallCode != rlpb.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit.GetRequestsPerUnit() != 2 {
				t.Fatalf("answer over TLS: %v", resp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer over TLS within 60s (last: %v); log:\n%s", err, errs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := call(grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Fatal("a plaintext call was answered by the TLS listener")
	}
}

// TestEnvoyUsageInQueryAPI: Envoy calls' usage is rolled up and read back
// through the query API as service = domain, metric = descriptor path,
// application = value; after a restart the counters are restored from it.
func TestEnvoyUsageInQueryAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse and a process")
	}
	ch, _ := chtest.Start(t)
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	cfgFile := writeConfig(t, `tenants:
  - id: gw
    admin_token: adm-envoy-query
    query_tokens: [q-envoy-query]
`)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte("domain: d\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 100}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	api, qry, grpcAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	args := []string{"serve", "--roles", "api,rollup,query", "--kafka", brokers, "--clickhouse", ch.Addr(), "--listen", api,
		"--query-listen", qry, "--data-dir", t.TempDir(), "--config", cfgFile, "--node", "e3",
		"--envoy-config", dir, "--grpc-listen", grpcAddr, "--envoy-tenant", "gw"}
	node := startProcess(t, "node", args...)
	waitReady(t, api)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := rlpb.NewRateLimitServiceClient(conn)
	for _, call := range []struct {
		user string
		hits uint32
	}{{"u1", 3}, {"u2", 1}, {"u1", 2}} {
		req := &rlpb.RateLimitRequest{Domain: "d", HitsAddend: call.hits, Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: call.user}}}}}
		if resp, err := c.ShouldRateLimit(context.Background(), req); err != nil || resp.OverallCode != rlpb.RateLimitResponse_OK {
			t.Fatalf("ShouldRateLimit: %v %v", resp, err)
		}
	}

	query := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+qry+path, nil)
		req.Header.Set("Authorization", "Bearer q-envoy-query")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := query("/api/v1/usage?service_id=d&metric=user&app_id=u1&granularity=total")
		if code == 200 && strings.Contains(body, `"total":5`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of u1: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		code, body := query("/api/v1/top?service_id=d&metric=user")
		if code == 200 && strings.Contains(body, `"u1"`) && strings.Contains(body, `"u2"`) {
			if strings.Index(body, `"u1"`) > strings.Index(body, `"u2"`) {
				t.Fatalf("top: u1 (5) after u2 (1): %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("top: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Restarted, the node restores u1's 5 hits of the hour: 95 more fit,
	// then nothing.
	node.stop(30 * time.Second)
	startProcess(t, "restarted", args...)
	waitReady(t, api)
	conn2, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	c2 := rlpb.NewRateLimitServiceClient(conn2)
	for _, step := range []struct {
		hits uint32
		want rlpb.RateLimitResponse_Code
	}{{95, rlpb.RateLimitResponse_OK}, {1, rlpb.RateLimitResponse_OVER_LIMIT}} {
		req := &rlpb.RateLimitRequest{Domain: "d", HitsAddend: step.hits, Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "u1"}}}}}
		resp, err := c2.ShouldRateLimit(context.Background(), req)
		if err != nil || resp.OverallCode != step.want {
			t.Fatalf("after the restart, %d hits: %v %v, want %v", step.hits, resp, err, step.want)
		}
	}
}

// TestEnvoyTwoNodes: usage one API node admits reaches the other node's
// counters through the usage topic, so both converge on each limit.
func TestEnvoyTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	brokers := startKfake(t, kfake.SeedTopics(2, event.Topic))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte("domain: d\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 10}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var grpcAddrs []string
	for _, n := range []string{"e4", "e5"} {
		api, g := freeAddr(t), freeAddr(t)
		startServe(t, "serve", "--roles", "api", "--kafka", brokers, "--listen", api, "--data-dir", t.TempDir(),
			"--node", n, "--envoy-config", dir, "--grpc-listen", g)
		waitReady(t, api)
		grpcAddrs = append(grpcAddrs, g)
	}
	call := func(addr string, hits uint64) *rlpb.RateLimitResponse {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The descriptor's own hits_addend, which may be zero (the
		// request's zero means one).
		req := &rlpb.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{HitsAddend: wrapperspb.UInt64(hits),
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "u1"}}}}}
		resp, err := rlpb.NewRateLimitServiceClient(conn).ShouldRateLimit(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := call(grpcAddrs[0], 7); r.OverallCode != rlpb.RateLimitResponse_OK {
		t.Fatalf("7 hits on the first node: %v", r)
	}
	// The second node learns of them; a check with zero hits counts nothing.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := call(grpcAddrs[1], 0)
		if r.Statuses[0].LimitRemaining == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second node still answers %v, want 3 remaining", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := call(grpcAddrs[1], 4); r.OverallCode != rlpb.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("4 more hits on the second node: %v, want OVER_LIMIT", r)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// syncBuffer is a bytes.Buffer safe for the node writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var monthCurrent2 = regexp.MustCompile(`metric="hits" period="month">.*?<current_value>2</current_value>`)

// waitReady waits until /status says ok: counters are restored.
// writeConfig writes a configuration document to a file of its own and
// returns the file's path.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// startKfake starts a one-broker kfake cluster on a TCP port (closed when
// the test ends, after the nodes the test starts later) and returns its
// address.
func startKfake(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	return strings.Join(kafkatest.Start(t, opts...).Addrs, ",")
}

// startServe runs sluice with args in the background until the test ends;
// the returned buffer collects its stderr.
func startServe(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	errs := &syncBuffer{}
	go func() { done <- run(ctx, args, &syncBuffer{}, errs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("sluice %s did not stop", strings.Join(args, " "))
		}
	})
	return errs
}

func waitReady(t *testing.T, listen string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := get(t, "http://"+listen+"/status"); code == 200 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("/status did not become ready within 60s")
}

var curlLine = regexp.MustCompile(`curl -s "([^"]+)"`)

// freeAddr returns a loopback address with a free port.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startDev runs `sluice dev` in-process over dir and returns the authrep URL
// it printed, and a stop function that waits for the drain.
func startDev(t *testing.T, dir, listen string) (string, func()) {
	t.Helper()
	url, _, _, stop := startDevOut(t, dir, listen)
	return url, stop
}

// startDevOut is startDev with extra flags, also returning what dev prints
// on stdout and stderr.
func startDevOut(t *testing.T, dir, listen string, extra ...string) (url string, out, errs *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errs = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	args := append([]string{"dev", "--data-dir", dir, "--listen", listen, "--node", "test"}, extra...)
	go func() {
		done <- run(ctx, args, out, errs)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := curlLine.FindStringSubmatch(out.String()); m != nil {
			stop = func() {
				cancel()
				select {
				case code := <-done:
					if code != 0 {
						t.Errorf("sluice dev exited %d: %s", code, errs.String())
					}
				case <-time.After(60 * time.Second):
					t.Error("sluice dev did not stop within 60s")
				}
			}
			return m[1], out, errs, stop
		}
		select {
		case code := <-done:
			t.Fatalf("sluice dev exited %d before printing credentials:\n%s\n%s", code, out.String(), errs.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("sluice dev printed no credentials within 60s:\n%s\n%s", out.String(), errs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	var lastErr error
	for i := 0; i < 50; i++ {
		resp, err := http.Get(url)
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return 0, ""
}

// TestDevQuickStart is the README's promise: `sluice dev` prints the demo
// tenant's credentials and a curl authrep that works as printed; restarted
// over the same data directory it keeps the same credentials.
func TestDevQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse and an embedded broker")
	}
	dir := filepath.Join(t.TempDir(), "data")
	listen := freeAddr(t)

	url, stop := startDev(t, dir, listen)
	waitReady(t, listen)
	code, body := get(t, url)
	if code != 200 || !strings.Contains(body, "<authorized>true</authorized>") || !strings.Contains(body, "<current_value>1</current_value>") {
		t.Fatalf("printed authrep: %d %s", code, body)
	}
	code, body = get(t, "http://"+listen+"/status")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/status: %d %s", code, body)
	}
	code, body = get(t, "http://"+listen+"/metrics")
	if code != 200 || !strings.Contains(body, "sluice_events_produced_total") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	stop()

	url2, stop2 := startDev(t, dir, listen)
	defer stop2()
	if url2 != url {
		t.Fatalf("credentials changed across a restart:\n%s\n%s", url, url2)
	}
	waitReady(t, listen)
	// The month counter survives the restart: the first call counted 1, so
	// this one reports 2 (restored from ClickHouse or the Kafka tail).
	code, body = get(t, url2)
	if code != 200 || !monthCurrent2.MatchString(body) {
		t.Fatalf("authrep after restart: want month current_value 2: %d %s", code, body)
	}
}

func TestCommandLineErrors(t *testing.T) {
	bad := writeConfig(t, "tenants:\n  - id: acme\n    admin_token: a\n    services:\n      - id: s1\n        plans:\n          - id: p\n            limits:\n              - {metric: hits, period: fortnight, max: 1}\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"serve without kafka", []string{"serve", "--roles", "api"}, 2, "--kafka is required"},
		{"query node with the kafka config log needs kafka", []string{"serve", "--roles", "query", "--clickhouse", "x:1"}, 2, "--kafka is required"},
		{"bad config log", []string{"serve", "--roles", "api", "--kafka", "x:1", "--config-log", "etcd"}, 2, "--config-log must be kafka or file"},
		{"serve unknown role", []string{"serve", "--roles", "api,web", "--kafka", "x:1"}, 2, `unknown role "web"`},
		{"serve rollup without clickhouse", []string{"serve", "--roles", "rollup", "--kafka", "x:1"}, 2, "--clickhouse is required"},
		{"bad spool policy", []string{"serve", "--roles", "api", "--kafka", "x:1", "--spool-full", "maybe"}, 2, "--spool-full must be"},
		{"zero topic partitions", []string{"serve", "--roles", "api", "--kafka", "x:1", "--topic-partitions", "0"}, 2, "--topic-partitions must be an integer from 1 to 10000"},
		{"topic partitions not a number", []string{"dev", "--topic-partitions", "many"}, 2, "--topic-partitions must be an integer from 1 to 10000"},
		{"config validate reports the path", []string{"config", "validate", bad}, 1, `tenants[0].services[0].plans[0].limits[0].period: unknown period "fortnight"`},
		{"unknown flag", []string{"serve", "--kafka", "x:1", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"zero rollup batch wait", []string{"serve", "--roles", "rollup", "--kafka", "x:1", "--clickhouse", "x:2", "--rollup-batch-wait", "0s"}, 2, "--rollup-batch-wait must be positive"},
		{"bad log level", []string{"serve", "--kafka", "x:1", "--log-level", "loud"}, 2, `invalid value "loud" for flag -log-level`},
		{"config unknown", []string{"config", "frob"}, 2, "unknown config command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errs)
			if code != tc.wantCode || !strings.Contains(errs.String(), tc.wantErr) {
				t.Fatalf("code %d, stderr %q; want %d containing %q", code, errs.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

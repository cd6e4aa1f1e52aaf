package envoyrls

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func flowYAML(dom string, rpu int) string {
	return fmt.Sprintf("domain: %s\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: %d}\n", dom, rpu)
}

// TestReloadWhileCallsFlow changes a file, adds one, breaks one and fixes
// it while calls flow, through Watch: every call is answered, by the
// configuration before or after each change, never by a broken one.
func TestReloadWhileCallsFlow(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, flowYAML("flow", 1000000))
	h := newHarness(t, Options{})
	h.load(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.svc.Watch(ctx, dir, 5*time.Millisecond)

	// Calls flow from two goroutines; every answer must be a limit the
	// directory held at some point.
	allowed := map[uint32]bool{1000000: true, 500000: true, 250000: true}
	var (
		calls  atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		errors []string
	)
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := h.client.ShouldRateLimit(context.Background(), request("flow", [][][2]string{{{"k", fmt.Sprint(w, "-", i%50)}}}, 1))
				calls.Add(1)
				if err == nil && (resp.OverallCode != ok || !allowed[resp.Statuses[0].GetCurrentLimit().GetRequestsPerUnit()]) {
					err = fmt.Errorf("answer %v", resp)
				}
				if err != nil {
					errMu.Lock()
					errors = append(errors, err.Error())
					errMu.Unlock()
				}
			}
		}()
	}
	limitOf := func(dom string) uint32 {
		resp := h.call(t, request(dom, [][][2]string{{{"k", "probe"}}}, 1))
		return resp.Statuses[0].GetCurrentLimit().GetRequestsPerUnit()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen within 10s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	loads := func(result string) float64 {
		return h.metric(t, `sluice_envoy_config_loads_total{result="`+result+`"}`)
	}

	writeFile(t, a, flowYAML("flow", 500000))
	waitFor("changed file", func() bool { return limitOf("flow") == 500000 })

	writeFile(t, b, flowYAML("flow2", 7))
	waitFor("added file", func() bool { return limitOf("flow2") == 7 })

	failed := loads("error")
	writeFile(t, a, "domain: flow\ndescriptors: [\n")
	waitFor("broken file reported", func() bool { return loads("error") == failed+1 })
	if got := limitOf("flow"); got != 500000 {
		t.Fatalf("after a broken file, flow's limit is %d, want the previous 500000", got)
	}
	if got := limitOf("flow2"); got != 7 {
		t.Fatalf("after a broken file, flow2's limit is %d, want the previous 7", got)
	}
	if got := h.svc.Config().Files; len(got) != 2 {
		t.Fatalf("config in force has files %v, want a.yaml and b.yaml", got)
	}

	writeFile(t, a, flowYAML("flow", 250000))
	waitFor("fixed file", func() bool { return limitOf("flow") == 250000 })
	if got := limitOf("flow2"); got != 7 {
		t.Fatalf("flow2's limit is %d after the fix, want 7", got)
	}

	close(stop)
	wg.Wait()
	if len(errors) > 0 {
		t.Fatalf("%d of %d calls failed during reloads, first: %s", len(errors), calls.Load(), errors[0])
	}
	if calls.Load() == 0 {
		t.Fatal("no call flowed during the reloads")
	}
	// flow2's probe counted across reloads: its counter survived them.
	if rem := h.call(t, request("flow2", [][][2]string{{{"k", "probe"}}}, 1)).Statuses[0].LimitRemaining; rem >= 7-3 {
		t.Fatalf("flow2 probe remaining %d: counters did not carry over reloads", rem)
	}
}

// TestWatchUnreadableDirectory: a directory that disappears is reported
// once, the configuration in force stays, and the directory's return is
// loaded.
func TestWatchUnreadableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), flowYAML("flow", 10))
	h := newHarness(t, Options{})
	h.load(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.svc.Watch(ctx, dir, 2*time.Millisecond)

	// Renamed away at once (removing the files first would be a valid,
	// empty configuration).
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.metric(t, `sluice_envoy_config_loads_total{result="error"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the missing directory was not reported")
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // many intervals
	if got := h.metric(t, `sluice_envoy_config_loads_total{result="error"}`); got != 1 {
		t.Fatalf("the missing directory was reported %v times, want once", got)
	}
	if got := h.call(t, request("flow", [][][2]string{{{"k", "x"}}}, 1)).Statuses[0].GetCurrentLimit().GetRequestsPerUnit(); got != 10 {
		t.Fatalf("limit %d while the directory is missing, want the previous 10", got)
	}

	writeFile(t, filepath.Join(dir+".gone", "a.yaml"), flowYAML("flow", 20))
	if err := os.Rename(dir+".gone", dir); err != nil {
		t.Fatal(err)
	}
	for h.call(t, request("flow", [][][2]string{{{"k", "x"}}}, 1)).Statuses[0].GetCurrentLimit().GetRequestsPerUnit() != 20 {
		if time.Now().After(deadline) {
			t.Fatal("the directory's return was not loaded")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

package load

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// sleeper is a target that answers 200 after d.
type sleeper struct{ d time.Duration }

func (s sleeper) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	time.Sleep(s.d)
	resp.SetStatusCode(200)
	return nil
}

func mustParse(t *testing.T, y string) *Scenario {
	t.Helper()
	s, err := ParseScenario([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const oneRequest = "name: one\nrequests:\n  - path: /x\n"

// TestOpenLoopLatencyFromDueTime: a target slower than the offered rate
// queues requests; open loop counts each latency from its due time, so the
// queueing shows, while the service time stays the target's.
func TestOpenLoopLatencyFromDueTime(t *testing.T) {
	s := mustParse(t, oneRequest)
	slow := func(int) doer { return sleeper{10 * time.Millisecond} }
	// Due every 5ms, answered every 10ms or more: request k is sent at
	// 10k ms or later and its latency is at least 5k+10 ms.
	r, err := Run(context.Background(), s, Options{Targets: []string{"http://t"}, Conns: 1, Rate: 200,
		Duration: 150 * time.Millisecond, doer: slow})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "open" || r.Requests < 3 {
		t.Fatalf("mode %s, %d requests", r.Mode, r.Requests)
	}
	// The last answered request k = Requests-1 waited at least 5k ms.
	if want := float64(5000*(r.Requests-1) + 10000); r.Latency.Max < want*0.99 {
		t.Errorf("latency max %vµs, want at least %vµs (from the due time)", r.Latency.Max, want)
	}
	if r.Service.P50 < 9_900 || r.Service.P50 > r.Latency.P50 {
		t.Errorf("service p50 %vµs, latency p50 %vµs: want service >= 10ms and below latency", r.Service.P50, r.Latency.P50)
	}
	if r.Missed == 0 {
		t.Error("no request counted as missed, though the target answered half of those due")
	}

	// Closed loop on the same target: latency is the service time.
	c, err := Run(context.Background(), s, Options{Targets: []string{"http://t"}, Conns: 1,
		Duration: 60 * time.Millisecond, doer: slow})
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != "closed" || c.Latency != c.Service || c.Missed != 0 {
		t.Errorf("closed loop: mode %s, latency %+v, service %+v, missed %d", c.Mode, c.Latency, c.Service, c.Missed)
	}
}

// TestOpenLoopKeepsUp: a fast target at a low rate answers every request
// due, none missed.
func TestOpenLoopKeepsUp(t *testing.T) {
	s := mustParse(t, oneRequest)
	r, err := Run(context.Background(), s, Options{Targets: []string{"http://t"}, Conns: 4, Rate: 200,
		Duration: 100 * time.Millisecond, doer: func(int) doer { return sleeper{0} }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests < 15 || r.Requests > 21 || r.Missed != 0 || r.Errors != 0 {
		t.Errorf("%d requests (want about 20), %d missed, %d errors", r.Requests, r.Missed, r.Errors)
	}
}

func TestParseScenario(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"minimal", oneRequest, ""},
		{"zipf", oneRequest + "apps: 100\ndistribution: zipf\n", ""},
		{"no name", "requests:\n  - path: /x\n", "no name"},
		{"no requests", "name: x\n", "want 1 to 64 requests"},
		{"unknown field", oneRequest + "rate: 5\n", "field rate not found"},
		{"bad distribution", oneRequest + "distribution: normal\n", "want uniform or zipf"},
		{"zipf exponent", oneRequest + "distribution: zipf\nzipf_s: 0.5\n", "zipf_s"},
		{"too many apps", oneRequest + "apps: 1000000000\n", "apps 1000000000"},
		{"relative path", "name: x\nrequests:\n  - path: x\n", "must start with /"},
		{"method", "name: x\nrequests:\n  - path: /x\n    method: DELETE\n", "want GET or POST"},
		{"negative weight", "name: x\nrequests:\n  - path: /x\n    weight: -1\n", "weight -1"},
		{"repeat unterminated", "name: x\nrequests:\n  - path: /x\n    body: 'a{repeat 3}b'\n", "without {end}"},
		{"repeat too many", "name: x\nrequests:\n  - path: /x\n    body: 'a{repeat 99999}b{end}'\n", "want a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseScenario([]byte(tc.yaml))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.err == "" && (s.Requests[0].Method != "GET" || s.Requests[0].Weight != 1 || s.Requests[0].Expect[0] != 200):
				t.Errorf("defaults not filled: %+v", s.Requests[0])
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrScenario)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// TestStandardScenarios: the scenario files make bench-load runs parse.
func TestStandardScenarios(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.yaml")
	if err != nil || len(files) < 6 {
		t.Fatalf("%d scenario files (%v), want at least 6", len(files), err)
	}
	for _, f := range files {
		if _, err := LoadScenario(f); err != nil {
			t.Error(err)
		}
	}
}

func TestRender(t *testing.T) {
	s := mustParse(t, `name: batch
apps: 5
app_key: uk-{i}
vars: {token: st-1}
requests:
  - method: POST
    path: /transactions.xml?service_token={token}
    body: "service_id=s{repeat 3}&transactions[{n}][user_key]={app}{end}&x={unknown}"
`)
	p := newPicker(s, 1)
	r := s.render(0, p)
	if string(r.uri) != "/transactions.xml?service_token=st-1" {
		t.Errorf("uri %s", r.uri)
	}
	body := string(r.body)
	for _, want := range []string{"service_id=s&transactions[0][user_key]=uk-", "&transactions[2][user_key]=uk-", "&x={unknown}"} {
		if !strings.Contains(body, want) {
			t.Errorf("body %s lacks %s", body, want)
		}
	}
	if n := strings.Count(body, "user_key]=uk-"); n != 3 {
		t.Errorf("%d transactions in %s, want 3", n, body)
	}
	j := mustParse(t, "name: j\napps: 3\napp_key: k{i}\nrequests:\n  - path: /j\n    method: POST\n    body: '{\"r\":[{\"key\":\"{app}\",\"n\":{n}}]}'\n")
	if got := string(j.render(0, newPicker(j, 1)).body); !strings.HasPrefix(got, `{"r":[{"key":"k`) || !strings.HasSuffix(got, `","n":{n}}]}`) {
		t.Errorf("JSON body %s", got)
	}
	z := mustParse(t, oneRequest+"apps: 1000\ndistribution: zipf\nzipf_s: 1.5\n")
	zp, seen := newPicker(z, 7), map[uint64]int{}
	for range 10000 {
		v := zp.next()
		if v >= 1000 {
			t.Fatalf("zipf pick %d out of range", v)
		}
		seen[v]++
	}
	if seen[0] < 2000 { // the hottest application takes a large share
		t.Errorf("zipf: app 0 picked %d times of 10000", seen[0])
	}
}

func sampleReport() *Report {
	p := func(v float64) Percentiles {
		return Percentiles{P50: v, P90: 2 * v, P99: 4 * v, P999: 8 * v, Max: 16 * v, Mean: 1.5 * v}
	}
	return &Report{
		Machine: "2 vCPU test", Commit: "abc1234", When: "2026-12-04 15:00 UTC", LoadAverage: "5.1",
		Commands: []string{"make bench-load"}, Baseline: "noop",
		Results: []*Result{
			{Scenario: "authrep-uniform", Label: "noop", Mode: "closed", Conns: 64, Seconds: 10, Requests: 800000, Throughput: 80000, TxThroughput: 80000, Latency: p(700), Service: p(700), Statuses: map[int]int64{200: 800000}},
			{Scenario: "authrep-uniform", Label: "sluice", Mode: "closed", Conns: 64, Seconds: 10, Requests: 680000, Errors: 3, Throughput: 68000, TxThroughput: 67999.7, Latency: p(900), Service: p(900), Statuses: map[int]int64{200: 679997, 0: 3}},
			{Scenario: "authrep-uniform", Label: "sluice", Mode: "open", OfferedRate: 10000, Conns: 64, Seconds: 10, Requests: 100000, Throughput: 10000, Latency: p(80), Service: p(60), Statuses: map[int]int64{200: 100000}},
			{Scenario: "authrep-uniform", Label: "sluice", Mode: "open", OfferedRate: 30000, Conns: 64, Seconds: 10, Requests: 290000, Missed: 10000, Throughput: 29000, Latency: p(2500), Service: p(300), Statuses: map[int]int64{200: 290000}},
			{Scenario: "authrep-uniform", Label: "noop", Mode: "open", OfferedRate: 30000, Conns: 64, Seconds: 10, Requests: 300000, Throughput: 30000, Latency: p(50), Service: p(40), Statuses: map[int]int64{200: 300000}},
		},
	}
}

// TestReportGolden checks the JSON and Markdown reports byte for byte.
func TestReportGolden(t *testing.T) {
	r := sampleReport()
	var js, md bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"report.json": js.Bytes(), "report.md": md.Bytes()} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
		}
	}
	if q := r.Ratio(r.Results[1]); q != 0.85 {
		t.Errorf("ratio %v, want 0.85", q)
	}
}

func TestChart(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteChart(&b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if sz := img.Bounds().Size(); sz.X != 900 || sz.Y != 540 {
		t.Fatalf("chart %v", sz)
	}
	// The p99 markers of both series are drawn in their colours.
	colours := map[[3]uint32]bool{}
	for y := 0; y < 540; y++ {
		for x := 0; x < 900; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	for _, c := range [][3]uint32{{31, 119, 180}, {214, 39, 40}} {
		if !colours[c] {
			t.Errorf("no pixel of series colour %v", c)
		}
	}
}

// TestAgainstNoop drives the real client against the no-op baseline.
func TestAgainstNoop(t *testing.T) {
	base, stop, err := StartNoop("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	s := mustParse(t, "name: mix\napps: 10\nrequests:\n  - path: /a?k={app}\n  - path: /b\n    method: POST\n    body: x={app}\n    transactions: 5\n")
	r, err := Run(context.Background(), s, Options{Targets: []string{base}, Conns: 4, Duration: 200 * time.Millisecond, Warmup: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests < 10 || r.Errors != 0 || r.Statuses[200] != r.Requests || r.PerRequest["request0"] == 0 || r.PerRequest["request1"] == 0 {
		t.Fatalf("%+v", r)
	}
	if r.Transactions <= r.Requests {
		t.Errorf("%d transactions for %d requests: batches of 5 not counted", r.Transactions, r.Requests)
	}
	if _, err := Run(context.Background(), s, Options{Targets: []string{"ftp://x"}}); err == nil {
		t.Error("ftp target accepted")
	}
}

func TestOpen(t *testing.T) {
	names := Builtin()
	if len(names) < 7 {
		t.Fatalf("built-in scenarios %v", names)
	}
	for _, n := range names {
		s, err := Open(n)
		if err != nil || s.Name != n {
			t.Errorf("Open(%s): %v, name %v", n, err, s)
		}
	}
	if s, err := Open("scenarios/denied.yaml"); err != nil || s.Name != "denied" {
		t.Errorf("Open(file): %v", err)
	}
	if _, err := Open("no-such"); err == nil || !strings.Contains(err.Error(), "authrep-uniform") {
		t.Errorf("Open(no-such): %v", err)
	}
}

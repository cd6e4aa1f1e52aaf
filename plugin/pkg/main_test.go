package main

// The test Grafana's issue asks for: the built plugin binary, started as a
// separate process and driven over the plugin gRPC protocol exactly as
// Grafana drives it (go-plugin handshake, then the Data, Diagnostics and
// Resource services), against a running `sluice dev` with usage in it. Every
// frame is compared with the query API's own answer to the same call.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/sluice-dev/sluice/plugin/pkg/sluice"
)

const (
	queryToken   = "gq-query-token-0000000000000000000"
	adminToken   = "ga-admin-token-0000000000000000000"
	serviceToken = "gs-service-token-000000000000000000"
)

// config is the tenant `sluice dev` starts with: a monthly limit of 100
// hits, which a1 approaches and then passes 90 % of.
const config = `tenants:
  - id: grafana
    admin_token: "` + adminToken + `"
    query_tokens: ["` + queryToken + `"]
    services:
      - id: svc
        tokens: ["` + serviceToken + `"]
        auth_mode: app_id
        metrics:
          - name: hits
          - name: search
            parent: hits
        plans:
          - id: pro
            limits:
              - {metric: hits, period: month, max: 100}
              - {metric: search, period: day, max: 1000}
          - id: max
            limits:
              - {metric: hits, period: month, max: 1000000}
        applications:
          - {id: a1, plan: pro}
          - {id: a2, plan: pro}
          - {id: a3, plan: pro}
`

// root is the repository root (this file is in plugin/pkg).
func root(t *testing.T) string {
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cmd", "sluice")); err != nil {
		t.Fatalf("repository root not at %s: %v", dir, err)
	}
	return dir
}

func build(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuf is a goroutine-safe output buffer of a child process.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSluice runs `sluice dev` with config and returns the SMAPI and query
// API base URLs.
func startSluice(t *testing.T, bin string) (smapi, qapi string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	listen, qlisten := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "dev", "--data-dir", filepath.Join(dir, "data"), "--listen", listen, "--query-listen", qlisten, "--config", cfg, "--node", "grafana-test")
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	smapi, qapi = "http://"+listen, "http://"+qlisten
	deadline := time.Now().Add(90 * time.Second)
	for {
		if code, _ := httpGet(t, qapi+"/health", ""); code == 200 {
			if code, _ := httpGet(t, smapi+"/status", ""); code == 200 { // counters restored: ready
				return smapi, qapi
			}
		}
		select {
		case <-done:
			t.Fatalf("sluice dev exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice dev not ready in 90 s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGet(t *testing.T, u, token string) (int, []byte) {
	t.Helper()
	return httpDo(t, "GET", u, token, "")
}

func httpDo(t *testing.T, method, u, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// authrep reports usage of one application and says whether it was
// authorized.
func authrep(t *testing.T, smapi, app string, usage map[string]int) bool {
	t.Helper()
	v := url.Values{"service_token": {serviceToken}, "service_id": {"svc"}, "app_id": {app}}
	for m, n := range usage {
		v.Set("usage["+m+"]", fmt.Sprint(n))
	}
	code, body := httpGet(t, smapi+"/transactions/authrep.xml?"+v.Encode(), "")
	if code != 200 && code != 409 {
		t.Fatalf("authrep %s: %d %s", app, code, body)
	}
	return code == 200
}

// waitUsage waits until the query API's total of hits this month is want.
func waitUsage(t *testing.T, qapi string, want int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	now := time.Now().UTC()
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	to := now.Add(time.Hour).Format(time.RFC3339)
	for {
		code, body := httpGet(t, qapi+"/api/v1/usage?service_id=svc&metric=hits&granularity=total&from="+from+"&to="+to, queryToken)
		var ans struct{ Total int64 }
		json.Unmarshal(body, &ans)
		if code == 200 && ans.Total == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hits this month: %d %s, want total %d", code, body, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pluginClient is the plugin process and its three gRPC services.
type pluginClient struct {
	data  grpcplugin.DataClient
	diag  grpcplugin.DiagnosticsClient
	res   grpcplugin.ResourceClient
	close func()
}

// startPlugin starts the binary as Grafana does: go-plugin's handshake
// (magic cookie, protocol version 2, gRPC), then dispenses the services.
func startPlugin(t *testing.T, bin string) *pluginClient {
	t.Helper()
	c := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{ProtocolVersion: grpcplugin.ProtocolVersion,
			MagicCookieKey: grpcplugin.MagicCookieKey, MagicCookieValue: grpcplugin.MagicCookieValue},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"data": &grpcplugin.DataGRPCPlugin{}, "diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{}, "resource": &grpcplugin.ResourceGRPCPlugin{}}},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Stderr:           io.Discard,
		Logger:           hclog.NewNullLogger(),
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		t.Fatalf("plugin handshake: %v", err)
	}
	disp := func(name string) any {
		raw, err := rpc.Dispense(name)
		if err != nil {
			c.Kill()
			t.Fatalf("dispense %s: %v", name, err)
		}
		return raw
	}
	p := &pluginClient{data: disp("data").(grpcplugin.DataClient), diag: disp("diagnostics").(grpcplugin.DiagnosticsClient),
		res: disp("resource").(grpcplugin.ResourceClient), close: c.Kill}
	t.Cleanup(p.close)
	return p
}

// dsContext is the plugin context Grafana sends for a data source with
// these settings; each distinct uid is a separate instance in the plugin.
func dsContext(uid, apiURL, token string) backend.PluginContext {
	jd, _ := json.Marshal(map[string]any{"url": apiURL})
	return backend.PluginContext{Namespace: "default", PluginID: sluice.PluginID, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
		ID: 1, UID: uid, Name: uid, Type: sluice.PluginID, JSONData: jd, Updated: time.Unix(1700000000, 0),
		DecryptedSecureJSONData: map[string]string{"token": token}}}
}

func (p *pluginClient) health(t *testing.T, pc backend.PluginContext) *backend.CheckHealthResult {
	t.Helper()
	resp, err := p.diag.CheckHealth(context.Background(), &pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pc)})
	if err != nil {
		t.Fatalf("CheckHealth: %v", err)
	}
	return backend.FromProto().CheckHealthResponse(resp)
}

func (p *pluginClient) query(t *testing.T, pc backend.PluginContext, q backend.DataQuery) backend.DataResponse {
	t.Helper()
	resp, err := p.data.QueryData(context.Background(), backend.ToProto().QueryDataRequest(&backend.QueryDataRequest{PluginContext: pc, Queries: []backend.DataQuery{q}}))
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	r, err := backend.FromProto().QueryDataResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	return r.Responses[q.RefID]
}

func (p *pluginClient) resource(t *testing.T, pc backend.PluginContext, path string) (int, []byte) {
	t.Helper()
	stream, err := p.res.CallResource(context.Background(), backend.ToProto().CallResourceRequest(&backend.CallResourceRequest{
		PluginContext: pc, Path: path, Method: "GET", URL: path}))
	if err != nil {
		t.Fatal(err)
	}
	var status int
	var body []byte
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Code != 0 {
			status = int(m.Code)
		}
		body = append(body, m.Body...)
	}
	return status, body
}

func dataQuery(refID string, tr backend.TimeRange, q sluice.Query) backend.DataQuery {
	b, _ := json.Marshal(q)
	return backend.DataQuery{RefID: refID, QueryType: q.QueryType, TimeRange: tr, Interval: time.Minute, MaxDataPoints: 1000, JSON: b}
}

// apiJSON calls the query API directly.
func apiJSON(t *testing.T, qapi, path string, params url.Values, out any) {
	t.Helper()
	code, body := httpGet(t, qapi+path+"?"+params.Encode(), queryToken)
	if code != 200 {
		t.Fatalf("%s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatal(err)
	}
}

func TestPluginOverGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sluice and the plugin, starts sluice dev with ClickHouse")
	}
	tmp := t.TempDir()
	sluiceBin := filepath.Join(tmp, "sluice")
	build(t, root(t), sluiceBin, "./cmd/sluice")
	// `make test-plugin` names the binary `make plugin` built for plugin/dist;
	// without it the test builds one the same way.
	pluginBin := os.Getenv("SLUICE_PLUGIN_BINARY")
	if pluginBin == "" {
		pluginBin = filepath.Join(tmp, "gpx_sluice_linux_amd64")
		build(t, ".", pluginBin, ".")
	}
	smapi, qapi := startSluice(t, sluiceBin)
	p := startPlugin(t, pluginBin)
	good := dsContext("good", qapi, queryToken)

	t.Run("CheckHealth", func(t *testing.T) {
		cases := []struct {
			name   string
			pc     backend.PluginContext
			status backend.HealthStatus
			says   *regexp.Regexp
		}{
			{"ok", good, backend.HealthStatusOk, regexp.MustCompile(`reachable and the token is valid: 1 service`)},
			{"bad URL", dsContext("bad-url", "http://"+freeAddr(t), queryToken), backend.HealthStatusError, regexp.MustCompile(`^Sluice is unreachable at http://127\.0\.0\.1:\d+: .*refused`)},
			{"not Sluice", dsContext("not-sluice", smapi+"/nope", queryToken), backend.HealthStatusError, regexp.MustCompile(`Not a Sluice query API at .*HTTP 404`)},
			{"bad token", dsContext("bad-token", qapi, "wrong-token"), backend.HealthStatusError, regexp.MustCompile(`reachable at .*but it refused the token \(invalid_token\)`)},
			{"no token", dsContext("no-token", qapi, ""), backend.HealthStatusError, regexp.MustCompile(`no token is set`)},
			{"no URL", dsContext("no-url", "", queryToken), backend.HealthStatusError, regexp.MustCompile(`URL is not set`)},
		}
		for _, c := range cases {
			r := p.health(t, c.pc)
			if r.Status != c.status || !c.says.MatchString(r.Message) {
				t.Errorf("%s: %v %q, want %v matching %s", c.name, r.Status, r.Message, c.status, c.says)
			}
			if strings.Contains(r.Message, "wrong-token") || strings.Contains(r.Message, queryToken) {
				t.Errorf("%s: the message quotes the token", c.name)
			}
		}
	})

	// Usage: a1 80 hits (80 % of its month), a2 30 hits of which 5 search,
	// a3 denied once (101 > 100).
	if !authrep(t, smapi, "a1", map[string]int{"hits": 80}) || !authrep(t, smapi, "a2", map[string]int{"hits": 25}) ||
		!authrep(t, smapi, "a2", map[string]int{"search": 5}) {
		t.Fatal("authrep refused within the limits")
	}
	if authrep(t, smapi, "a3", map[string]int{"hits": 101}) {
		t.Fatal("authrep over the monthly limit was authorized")
	}
	waitUsage(t, qapi, 110)

	now := time.Now().UTC()
	tr := backend.TimeRange{From: now.Add(-2 * time.Hour), To: now.Add(time.Minute)}
	base := func() url.Values {
		return url.Values{"service_id": {"svc"}, "from": {tr.From.Format(time.RFC3339Nano)}, "to": {tr.To.Format(time.RFC3339Nano)},
			"granularity": {sluice.Granularity("", tr, time.Minute, 1000)}}
	}

	t.Run("usage", func(t *testing.T) {
		for _, groupBy := range []string{"", "app_id", "metric"} {
			r := p.query(t, good, dataQuery("A", tr, sluice.Query{QueryType: sluice.QueryUsage, ServiceID: "svc", Metric: "hits", GroupBy: groupBy}))
			if r.Error != nil {
				t.Fatalf("group by %q: %v", groupBy, r.Error)
			}
			params := base()
			params.Set("metric", "hits")
			if groupBy != "" {
				params.Set("group_by", groupBy)
			}
			var ans struct {
				Series []struct {
					Group  map[string]string
					Points []struct {
						T     string
						Value int64
					}
				}
			}
			apiJSON(t, qapi, "/api/v1/usage", params, &ans)
			want := map[string]string{}
			for _, s := range ans.Series {
				var pts []string
				for _, pt := range s.Points {
					pts = append(pts, fmt.Sprintf("%s=%d", pt.T, pt.Value))
				}
				want[s.Group[groupBy]] = strings.Join(pts, " ")
			}
			got := map[string]string{}
			for _, f := range r.Frames {
				if f.Fields[0].Name != sluice.FieldTime || f.Fields[1].Name != sluice.FieldValue || f.Fields[1].Config.Unit != "short" {
					t.Fatalf("frame fields: %s %s", f.Fields[0].Name, f.Fields[1].Name)
				}
				var pts []string
				for i := 0; i < f.Rows(); i++ {
					pts = append(pts, fmt.Sprintf("%s=%d", f.Fields[0].At(i).(time.Time).UTC().Format(time.RFC3339), f.Fields[1].At(i).(int64)))
				}
				got[f.Fields[1].Labels[groupBy]] = strings.Join(pts, " ")
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
				t.Errorf("group by %q:\n got %v\nwant %v", groupBy, got, want)
			}
			if groupBy == "app_id" && len(want) != 2 {
				t.Errorf("group by app_id: %d series, want a1 and a2", len(want))
			}
		}
		// Two applications named: one series each, labelled.
		r := p.query(t, good, dataQuery("B", tr, sluice.Query{QueryType: sluice.QueryUsage, ServiceID: "svc", Metric: "hits", AppIDs: []string{"a1", "a2"}}))
		sums := map[string]int64{}
		for _, f := range r.Frames {
			for i := 0; i < f.Rows(); i++ {
				sums[f.Fields[1].Labels["app_id"]] += f.Fields[1].At(i).(int64)
			}
		}
		if r.Error != nil || sums["a1"] != 80 || sums["a2"] != 30 {
			t.Errorf("two apps: %v %v", sums, r.Error)
		}
	})

	t.Run("denials", func(t *testing.T) {
		r := p.query(t, good, dataQuery("A", tr, sluice.Query{QueryType: sluice.QueryDenials, ServiceID: "svc"}))
		if r.Error != nil || len(r.Frames) != 1 {
			t.Fatalf("%v %d frames", r.Error, len(r.Frames))
		}
		var ans struct {
			Series []struct {
				Group map[string]string
				Total int64
			}
		}
		apiJSON(t, qapi, "/api/v1/denials", base(), &ans)
		var total int64
		f := r.Frames[0]
		for i := 0; i < f.Rows(); i++ {
			total += f.Fields[1].At(i).(int64)
		}
		if len(ans.Series) != 1 || f.Fields[1].Labels["reason"] != ans.Series[0].Group["reason"] || total != ans.Series[0].Total || total != 1 {
			t.Errorf("denials: frame %v total %d, API %+v", f.Fields[1].Labels, total, ans.Series)
		}
	})

	t.Run("top", func(t *testing.T) {
		r := p.query(t, good, dataQuery("A", tr, sluice.Query{QueryType: sluice.QueryTop, ServiceID: "svc", Metric: "hits", Limit: 5}))
		if r.Error != nil || len(r.Frames) != 1 {
			t.Fatalf("%v", r.Error)
		}
		params := base()
		params.Del("granularity")
		params.Set("metric", "hits")
		params.Set("limit", "5")
		var ans struct {
			Apps []struct {
				AppID string `json:"app_id"`
				Value int64
			}
		}
		apiJSON(t, qapi, "/api/v1/top", params, &ans)
		f := r.Frames[0]
		var got, want []string
		for i := 0; i < f.Rows(); i++ {
			got = append(got, fmt.Sprintf("%s=%d", f.Fields[0].At(i), f.Fields[1].At(i)))
		}
		for _, a := range ans.Apps {
			want = append(want, fmt.Sprintf("%s=%d", a.AppID, a.Value))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(want) != "[a1=80 a2=30]" {
			t.Errorf("top: got %v, API %v", got, want)
		}
	})

	utilization := func(t *testing.T) map[string]float64 {
		r := p.query(t, good, dataQuery("U", tr, sluice.Query{QueryType: sluice.QueryUtilization, ServiceID: "svc", Period: "month", Format: sluice.FormatNumeric}))
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		out := map[string]float64{}
		for _, f := range r.Frames {
			if len(f.Fields) != 1 || f.Fields[0].Name != sluice.FieldRatio || f.Meta.Type != data.FrameTypeNumericMulti {
				t.Fatalf("numeric frame: %d fields", len(f.Fields))
			}
			out[f.Fields[0].Labels["app_id"]+" "+f.Fields[0].Labels["metric"]] = f.Fields[0].At(0).(float64)
		}
		return out
	}

	t.Run("utilization", func(t *testing.T) {
		r := p.query(t, good, dataQuery("A", tr, sluice.Query{QueryType: sluice.QueryUtilization, ServiceID: "svc"}))
		if r.Error != nil || len(r.Frames) != 1 {
			t.Fatalf("%v", r.Error)
		}
		var ans struct {
			Limits []struct {
				AppID  string `json:"app_id"`
				Metric string
				Period string
				Max    int64
				Usage  int64
				Ratio  float64
			}
		}
		apiJSON(t, qapi, "/api/v1/utilization", url.Values{"service_id": {"svc"}}, &ans)
		f := r.Frames[0]
		col := map[string]int{}
		for i, fl := range f.Fields {
			col[fl.Name] = i
		}
		for _, name := range sluice.Fields[sluice.QueryUtilization] {
			if _, ok := col[name]; !ok {
				t.Fatalf("no field %s", name)
			}
		}
		var got, want []string
		for i := 0; i < f.Rows(); i++ {
			got = append(got, fmt.Sprintf("%s %s %s %d/%d %.4f", f.Fields[col["app_id"]].At(i), f.Fields[col["metric"]].At(i), f.Fields[col["period"]].At(i),
				f.Fields[col["usage"]].At(i), f.Fields[col["max"]].At(i), f.Fields[col["ratio"]].At(i)))
		}
		for _, l := range ans.Limits {
			want = append(want, fmt.Sprintf("%s %s %s %d/%d %.4f", l.AppID, l.Metric, l.Period, l.Usage, l.Max, l.Ratio))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(want) != 6 || want[0] != "a1 hits month 80/100 0.8000" {
			t.Errorf("utilization:\n got %v\nwant %v", got, want)
		}
		if u := f.Fields[col["ratio"]].Config.Unit; u != "percentunit" {
			t.Errorf("ratio unit %q", u)
		}
	})

	t.Run("crosses 90 %", func(t *testing.T) {
		before := utilization(t)
		if before["a1 hits"] != 0.8 || before["a2 hits"] != 0.3 || before["a3 hits"] != 0 {
			t.Fatalf("before: %v", before)
		}
		if !authrep(t, smapi, "a1", map[string]int{"hits": 15}) {
			t.Fatal("a1's 15 more hits refused")
		}
		waitUsage(t, qapi, 125)
		after := utilization(t)
		if !(before["a1 hits"] < 0.9 && after["a1 hits"] >= 0.9) || after["a1 hits"] != 0.95 {
			t.Errorf("a1 before %v, after %v: want below then at or above 0.9", before["a1 hits"], after["a1 hits"])
		}
		// min_ratio 0.9 lists exactly the limits past the threshold.
		r := p.query(t, good, dataQuery("M", tr, sluice.Query{QueryType: sluice.QueryUtilization, ServiceID: "svc", MinRatio: 0.9, Format: sluice.FormatNumeric}))
		if r.Error != nil || len(r.Frames) != 1 || r.Frames[0].Fields[0].Labels["app_id"] != "a1" {
			t.Errorf("min ratio 0.9: %v %d frames", r.Error, len(r.Frames))
		}
	})

	t.Run("changes", func(t *testing.T) {
		if code, body := httpDo(t, "PUT", smapi+"/admin/api/v1/services/svc/applications/a2", adminToken, `{"plan": "max"}`); code/100 != 2 {
			t.Fatalf("move a2 to plan max: %d %s", code, body)
		}
		ctr := backend.TimeRange{From: now.Add(-time.Hour), To: time.Now().Add(time.Hour)}
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := p.query(t, good, dataQuery("C", ctr, sluice.Query{QueryType: sluice.QueryChanges, ServiceID: "svc"}))
			if r.Error != nil {
				t.Fatal(r.Error)
			}
			f := r.Frames[0]
			if f.Rows() == 1 {
				if f.Fields[1].At(0) != "plan_changed" || f.Fields[3].At(0) != "plan_changed,app:a2,plan:max" {
					t.Errorf("change: %v %v %v", f.Fields[1].At(0), f.Fields[2].At(0), f.Fields[3].At(0))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d changes, want a2's plan change", f.Rows())
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("resources", func(t *testing.T) {
		cases := []struct{ path, want string }{
			{"services", `[{"value":"svc","label":"svc","description":"2 metrics, 2 plans"}]`},
			{"metrics?serviceId=svc", `[{"value":"hits","label":"hits"},{"value":"search","label":"search","description":"counts toward hits"}]`},
			{"applications?serviceId=svc&prefix=a", `[{"value":"a1","label":"a1","description":"plan pro, active"},{"value":"a2","label":"a2","description":"plan max, active"},{"value":"a3","label":"a3","description":"plan pro, active"}]`},
		}
		for _, c := range cases {
			u, _ := url.Parse(c.path)
			stream, err := p.res.CallResource(context.Background(), backend.ToProto().CallResourceRequest(&backend.CallResourceRequest{
				PluginContext: good, Path: u.Path, Method: "GET", URL: c.path}))
			if err != nil {
				t.Fatal(err)
			}
			var body []byte
			code := 0
			for {
				m, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if m.Code != 0 {
					code = int(m.Code)
				}
				body = append(body, m.Body...)
			}
			if code != 200 || string(body) != c.want {
				t.Errorf("%s: %d %s", c.path, code, body)
			}
		}
		if code, _ := p.resource(t, dsContext("bad-token", qapi, "wrong-token"), "services"); code != 401 {
			t.Errorf("services with a bad token: %d", code)
		}
	})

	t.Run("bad queries", func(t *testing.T) {
		cases := []struct {
			name string
			q    sluice.Query
			says string
		}{
			{"unknown type", sluice.Query{QueryType: "nope", ServiceID: "svc"}, "unknown query type"},
			{"no service", sluice.Query{QueryType: sluice.QueryUsage}, "choose a service"},
			{"unknown metric", sluice.Query{QueryType: sluice.QueryUsage, ServiceID: "svc", Metric: "nope"}, "unknown_metric"},
			{"other tenant's or unknown service", sluice.Query{QueryType: sluice.QueryTop, ServiceID: "demo-service", Metric: "hits"}, "_service"},
		}
		for _, c := range cases {
			r := p.query(t, good, dataQuery("E", tr, c.q))
			if r.Error == nil || !strings.Contains(r.Error.Error(), c.says) {
				t.Errorf("%s: %v", c.name, r.Error)
			}
		}
	})
}

package smapi

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/event"
)

// errorCode extracts the code attribute of an <error> body ("" if none).
func errorCode(body []byte) string {
	const p = `<error code="`
	i := bytes.Index(body, []byte(p))
	if i < 0 {
		return ""
	}
	rest := body[i+len(p):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

// TestTenantIsolation crosses every credential of tenant acme with tenant
// beta's service and application (and the other way round); every
// combination must be refused with the right code, and nothing counted.
func TestTenantIsolation(t *testing.T) {
	cases := []struct {
		name, query string
		status      int
		code        string
	}{
		{"token A, service B", "service_token=st-a&service_id=svc-b&app_id=b1&app_key=kb", 403, "service_token_invalid"},
		{"token B, service A", "service_token=st-b&service_id=svc-a&user_key=uk-a1", 403, "service_token_invalid"},
		{"provider key A, service B", "provider_key=pk-a&service_id=svc-b&app_id=b1&app_key=kb", 403, "service_id_invalid"},
		{"provider key B, service A", "provider_key=pk-b&service_id=svc-a&user_key=uk-a1", 403, "service_id_invalid"},
		{"provider key B default, app of A", "provider_key=pk-b&app_id=app1", 404, "application_not_found"},
		{"token B, own service, A's app id", "service_token=st-b&service_id=svc-b&app_id=a1&app_key=k1", 404, "application_not_found"},
		{"token A, own service, B's user_key-less app id", "service_token=st-a&service_id=svc-a&user_key=kb", 403, "user_key_invalid"},
		{"token A, own app_id service, B's app", "service_token=st-a&service_id=svc-ids&app_id=b1&app_key=kb", 404, "application_not_found"},
		{"admin token A as service token", "service_token=adm-a&service_id=svc-a&user_key=uk-a1", 403, "service_token_invalid"},
		{"provider key A with token B's service", "provider_key=pk-a&service_token=st-b&service_id=svc-b&app_id=b1", 403, "service_id_invalid"},
	}
	for _, ep := range []string{"authorize", "authrep", "oauth_authorize", "oauth_authrep"} {
		for _, c := range cases {
			t.Run(ep+"/"+c.name, func(t *testing.T) {
				e := newEnv(t)
				resp := e.get("/transactions/"+ep+".xml?"+c.query+"&usage[hits]=1", "")
				got := errorCode(resp.Body())
				if ep == "oauth_authorize" || ep == "oauth_authrep" {
					// The oauth endpoints find apps by app_id in every mode.
					if c.code == "user_key_invalid" {
						c.status, c.code = 404, "application_not_found"
					}
				}
				if resp.StatusCode() != c.status || got != c.code {
					t.Fatalf("got %d %s, want %d %s; body %s", resp.StatusCode(), got, c.status, c.code, resp.Body())
				}
				if n := e.sink.Len(); n != 0 {
					t.Fatalf("%d events recorded for a refused call", n)
				}
			})
		}
	}
	// The batch report too. A credential of the wrong tenant refuses the
	// batch; an application the service does not have drops its
	// transaction (202, as 3scale) and files the error in the log of the
	// service the credentials opened, where the same credentials read it.
	for _, c := range cases {
		t.Run("report/"+c.name, func(t *testing.T) {
			e := newEnv(t)
			q := strings.NewReplacer("app_id=", "transactions[0][app_id]=", "user_key=", "transactions[0][user_key]=", "&app_key=", "&transactions[0][app_key]=").Replace(c.query)
			resp := e.do(request{method: "POST", uri: "/transactions.xml?" + q + "&transactions[0][usage][hits]=1"})
			appLevel := c.code == "application_not_found" || c.code == "user_key_invalid"
			switch {
			case appLevel && (resp.StatusCode() != 202 || len(resp.Body()) != 0):
				t.Fatalf("got %d %s, want 202 with the transaction dropped", resp.StatusCode(), resp.Body())
			case !appLevel && (resp.StatusCode() != c.status || errorCode(resp.Body()) != c.code):
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode(), errorCode(resp.Body()), c.status, c.code)
			}
			if n := e.sink.Len(); n != 0 {
				t.Fatalf("%d events recorded for a refused report", n)
			}
			if !appLevel {
				return
			}
			vals, err := url.ParseQuery(c.query)
			if err != nil {
				t.Fatal(err)
			}
			sid := vals.Get("service_id")
			if sid == "" {
				sid = "svc-b" // pk-b's default service
			}
			cred := "service_token=" + vals.Get("service_token")
			if pk := vals.Get("provider_key"); pk != "" {
				cred = "provider_key=" + pk
			}
			errs := e.get("/services/"+sid+"/errors.xml?"+cred, "")
			if errs.StatusCode() != 200 || !bytes.Contains(errs.Body(), []byte(`<errors count="1"><error code="`+c.code+`"`)) {
				t.Fatalf("error log of %s: %d %s", sid, errs.StatusCode(), errs.Body())
			}
		})
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[search]=2&usage[hits]=1&log[code]=201", ""), 200)
	mustStatus(t, e.get("/transactions/authorize.xml?"+stA+"&user_key=uk-a1&usage[hits]=1", ""), 200)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-susp&usage[hits]=1", ""), 409)
	mustStatus(t, e.get("/transactions/authorize.xml?"+stA+"&user_key=uk-a1&usage[search]=9", ""), 409)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=nope&usage[hits]=1", ""), 403)
	ts := fixedNow.Add(-time.Hour).Unix()
	mustStatus(t, e.do(request{method: "POST", uri: "/transactions.xml?" + stA +
		fmt.Sprintf("&transactions[0][user_key]=uk-a2&transactions[0][usage][hits]=%%233&transactions[0][timestamp]=%d&transactions[0][log][code]=500", ts) +
		"&transactions[1][user_key]=uk-a1&transactions[1][usage][upload]=4"}), 202)
	// flat_usage: the caller already added children into parents; the
	// events say so, or the rollup and the restore would add them again.
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a2&usage[hits]=2&usage[search]=1", "flat_usage=1"), 200)
	mustStatus(t, e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a2&transactions[0][usage][upload]=1",
		headers: [][2]string{{"3scale-options", "flat_usage=1"}}}), 202)

	evs := e.sink.Events()
	now := fixedNow.UnixMilli()
	base := event.Event{TenantID: "acme", ServiceID: "svc-a", PlanID: "basic", Region: "eu-1", Node: "n1", TS: now, Received: now}
	want := []event.Event{
		with(base, func(x *event.Event) {
			x.Kind, x.AppID, x.Code = event.KindAuthrep, "app1", 201
			x.Usage = []event.Usage{{Metric: "search", Value: 2}, {Metric: "hits", Value: 1}}
		}),
		with(base, func(x *event.Event) {
			x.Kind, x.AppID, x.Reason = event.KindDenied, "app-susp", "application_not_active"
		}),
		with(base, func(x *event.Event) { x.Kind, x.AppID, x.Reason = event.KindDenied, "app1", "limits_exceeded" }),
		with(base, func(x *event.Event) {
			x.Kind, x.AppID, x.Code, x.TS = event.KindReport, "app2", 500, ts*1000
			x.Usage = []event.Usage{{Metric: "hits", Value: 3, Set: true}}
		}),
		with(base, func(x *event.Event) {
			x.Kind, x.AppID = event.KindReport, "app1"
			x.Usage = []event.Usage{{Metric: "upload", Value: 4}}
		}),
		with(base, func(x *event.Event) {
			x.Kind, x.AppID = event.KindAuthrep, "app2"
			x.Usage = []event.Usage{{Metric: "hits", Value: 2, Flat: true}, {Metric: "search", Value: 1, Flat: true}}
		}),
		with(base, func(x *event.Event) {
			x.Kind, x.AppID = event.KindReport, "app2"
			x.Usage = []event.Usage{{Metric: "upload", Value: 1, Flat: true}}
		}),
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	ids := map[[16]byte]bool{}
	for i := range want {
		got := evs[i]
		if ids[got.ID] || got.ID == ([16]byte{}) {
			t.Errorf("event %d: id %x missing or repeated", i, got.ID)
		}
		ids[got.ID] = true
		got.ID = [16]byte{}
		if len(got.Usage) == 0 {
			got.Usage = nil
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want[i]) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

func with(e event.Event, f func(*event.Event)) event.Event { f(&e); return e }

// TestSinkRefusal: a sink that is not accepting turns authrep and report
// into 503s that count nothing; authorize still answers.
func TestSinkRefusal(t *testing.T) {
	e := newEnv(t)
	e.sink.refuse.Store(true)
	resp := e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]=1", "")
	if resp.StatusCode() != 503 || errorCode(resp.Body()) != "service_unavailable" {
		t.Fatalf("authrep with a refusing sink: %d %s", resp.StatusCode(), resp.Body())
	}
	resp = e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1"})
	if resp.StatusCode() != 503 {
		t.Fatalf("report with a refusing sink: %d %s", resp.StatusCode(), resp.Body())
	}
	// Nothing was counted.
	e.sink.refuse.Store(false)
	resp = e.get("/transactions/authorize.xml?"+stA+"&user_key=uk-a1", "")
	mustStatus(t, resp, 200)
	if !bytes.Contains(resp.Body(), []byte("<max_value>100</max_value><current_value>0</current_value>")) {
		t.Fatalf("usage was counted although the sink refused: %s", resp.Body())
	}
	// The race after Accepting: Append fails, the caller gets a 503.
	e.sink.failNext.Store(true)
	resp = e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]=1", "")
	mustStatus(t, resp, 503)
	// Denials still answer 409 when the denied event cannot be recorded.
	resp = e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-susp&usage[hits]=1", "")
	mustStatus(t, resp, 409)
}

// TestReportAllOrNothing: one transaction anywhere that 3scale refuses when
// the request arrives rejects the whole batch before anything is recorded.
// (Those 3scale finds only in its worker drop their transaction alone:
// TestReportDropsBadTransactions.)
func TestReportAllOrNothing(t *testing.T) {
	bad := []struct{ name, txn, code string }{
		{"user_id", "transactions[2][user_key]=uk-a1&transactions[2][user_id]=bob", "end_users_no_longer_supported"},
		{"array form", "transactions[][user_key]=uk-a1", "transactions_format_invalid"},
		{"nil", "transactions[2]", "transactions_has_nil_transaction"},
	}
	good := "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[1][user_key]=uk-a2&transactions[1][usage][hits]=1&"
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			resp := e.do(request{method: "POST", uri: "/transactions.xml", contentType: "application/x-www-form-urlencoded", body: stA + good + c.txn})
			if got := errorCode(resp.Body()); got != c.code {
				t.Fatalf("got %d %s, want %s", resp.StatusCode(), resp.Body(), c.code)
			}
			if e.sink.Len() != 0 {
				t.Fatal("events recorded for a rejected batch")
			}
			resp = e.get("/transactions/authorize.xml?"+stA+"&user_key=uk-a1", "")
			if !bytes.Contains(resp.Body(), []byte("<current_value>0</current_value>")) {
				t.Fatalf("usage counted for a rejected batch: %s", resp.Body())
			}
		})
	}
}

// TestReportEncodings sends the same batch in the query, an urlencoded body
// and a multipart body; all three record the same events.
func TestReportEncodings(t *testing.T) {
	fields := [][2]string{
		{"service_token", "st-a"}, {"service_id", "svc-a"},
		{"transactions[0][user_key]", "uk-a1"}, {"transactions[0][usage][hits]", "2"},
		{"transactions[1][user_key]", "uk-a2"}, {"transactions[1][usage][search]", "1"},
		{"transactions[1][timestamp]", "2026-05-15 10:00:00 +0000"},
	}
	var q strings.Builder
	for i, f := range fields {
		if i > 0 {
			q.WriteByte('&')
		}
		q.WriteString(strings.NewReplacer("[", "%5B", "]", "%5D").Replace(f[0]) + "=" + strings.ReplaceAll(strings.ReplaceAll(f[1], " ", "+"), "+0000", "%2B0000"))
	}
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	reqs := map[string]request{
		"query":      {method: "POST", uri: "/transactions.xml?" + q.String()},
		"urlencoded": {method: "POST", uri: "/transactions.xml", contentType: "application/x-www-form-urlencoded", body: q.String()},
		"multipart":  {method: "POST", uri: "/transactions.xml", contentType: w.FormDataContentType(), body: mp.String()},
	}
	var first string
	for name, r := range reqs {
		e := newEnv(t)
		resp := e.do(r)
		if resp.StatusCode() != 202 || len(resp.Body()) != 0 {
			t.Fatalf("%s: %d %q", name, resp.StatusCode(), resp.Body())
		}
		evs := e.sink.Events()
		for i := range evs {
			evs[i].ID = [16]byte{}
		}
		got := fmt.Sprintf("%+v", evs)
		if len(evs) != 2 || evs[1].TS != time.Date(2026, 5, 15, 10, 0, 0, 0, time.UTC).UnixMilli() {
			t.Fatalf("%s: events %s", name, got)
		}
		if first == "" {
			first = got
		} else if got != first {
			t.Fatalf("%s: events differ:\n%s\n%s", name, got, first)
		}
	}
}

// TestConcurrentAuthrep: many goroutines authrep one app with a limit of L;
// exactly L succeed (the check-and-increment is atomic on a node).
func TestConcurrentAuthrep(t *testing.T) {
	e := newEnv(t)
	const workers, perWorker, limit = 16, 20, 100 // hits per day is 100
	var ok, denied atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				resp := e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]=1", "")
				switch resp.StatusCode() {
				case 200:
					ok.Add(1)
				case 409:
					denied.Add(1)
				default:
					t.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != limit || denied.Load() != workers*perWorker-limit {
		t.Fatalf("%d authorized, %d denied; want %d and %d", ok.Load(), denied.Load(), limit, workers*perWorker-limit)
	}
	authreps := 0
	for _, ev := range e.sink.Events() {
		if ev.Kind == event.KindAuthrep {
			authreps++
		}
	}
	if authreps != limit {
		t.Fatalf("%d authrep events, want %d", authreps, limit)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]=1", ""), 200)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=uk-susp&usage[hits]=1", ""), 409)
	mustStatus(t, e.get("/transactions/authrep.xml?"+stA+"&user_key=nope", ""), 403)
	resp := e.get("/metrics", "")
	mustStatus(t, resp, 200)
	for _, want := range []string{
		`sluice_smapi_requests_total{endpoint="authrep",outcome="authorized"} 1`,
		`sluice_smapi_requests_total{endpoint="authrep",outcome="denied"} 1`,
		`sluice_smapi_requests_total{endpoint="authrep",outcome="error"} 1`,
		`sluice_smapi_request_duration_seconds_count{endpoint="authrep"} 3`,
		`sluice_smapi_events_total{result="appended"} 2`,
		`sluice_limiter_apps 1`, // app1; the denied app-susp has no counters
		`# TYPE sluice_limiter_contended_total counter`,
	} {
		if !bytes.Contains(resp.Body(), []byte(want+"\n")) {
			t.Errorf("metrics lack %q:\n%s", want, resp.Body())
		}
	}
}

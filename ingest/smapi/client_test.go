package smapi

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/3scale/3scale-go-client/threescale"
	"github.com/3scale/3scale-go-client/threescale/api"
	threescalehttp "github.com/3scale/3scale-go-client/threescale/http"
	"github.com/valyala/fasthttp"
)

// startTCP serves e's handler with NewServer's settings on a real loopback
// port and returns the base URL.
func startTCP(t *testing.T, e *env) string {
	t.Helper()
	return startTCPHandler(t, e.srv.Handler)
}

// startTCPHandler is startTCP for any handler.
func startTCPHandler(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	srv := NewServer(h, ServerOptions{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestThreescaleGoClient drives the server with the public 3scale Go client
// (github.com/3scale/3scale-go-client v0.5.1) over TCP and checks what the
// client parses: authorizations, denials with usage reports, the batch
// report (which the client sends in the query of a body-less POST),
// extensions and errors.
func TestThreescaleGoClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a TCP server")
	}
	e := newEnv(t)
	// The client computes nothing from time, but the server's windows must
	// be current for the timestamps the client reports.
	e.now.Store(time.Now().UnixNano())
	base := startTCP(t, e)
	c, err := threescalehttp.NewClient(base, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	token := api.ClientAuth{Type: api.ServiceToken, Value: "st-a"}
	pk := api.ClientAuth{Type: api.ProviderKey, Value: "pk-a"}
	userKey := func(k string, m api.Metrics) []api.Transaction {
		return []api.Transaction{{Params: api.Params{UserKey: k}, Metrics: m}}
	}

	t.Run("version", func(t *testing.T) {
		v, err := c.GetVersion()
		if err != nil || v != "0.1.0-test" {
			t.Fatalf("GetVersion = %q, %v", v, err)
		}
	})

	t.Run("authorize", func(t *testing.T) {
		res, err := c.Authorize(threescale.Request{Auth: token, Service: "svc-a", Transactions: userKey("uk-a1", api.Metrics{"hits": 1})})
		if err != nil || !res.Authorized || res.ErrorCode != "" {
			t.Fatalf("Authorize = %+v, %v", res, err)
		}
		// The client drops eternity reports (no period_start); it keeps day
		// and the sliding window (as Minute, its zero Period).
		day := findReport(t, res.UsageReports, "hits", api.Day)
		if day.MaxValue != 100 || day.CurrentValue != 0 || day.PeriodWindow.End-day.PeriodWindow.Start != 86400 {
			t.Fatalf("day report %+v", day)
		}
		if len(res.UsageReports["search"]) != 1 || res.UsageReports["search"][0].MaxValue != 5 {
			t.Fatalf("search reports %+v", res.UsageReports["search"])
		}
	})

	t.Run("authrep until the limit", func(t *testing.T) {
		req := threescale.Request{Auth: pk, Service: "svc-a", Transactions: userKey("uk-a2", api.Metrics{"search": 2})}
		for i := 1; i <= 2; i++ {
			res, err := c.AuthRep(req)
			if err != nil || !res.Authorized {
				t.Fatalf("AuthRep %d = %+v, %v", i, res, err)
			}
			if cur := res.UsageReports["search"][0].CurrentValue; cur != 2*i {
				t.Fatalf("AuthRep %d: search current %d, want %d", i, cur, 2*i)
			}
		}
		res, err := c.AuthRep(req)
		if err != nil || res.Authorized || res.RejectionReason != "usage limits are exceeded" {
			t.Fatalf("third AuthRep = %+v, %v", res, err)
		}
		if r := res.UsageReports["search"][0]; r.CurrentValue != 4 || r.MaxValue != 5 {
			t.Fatalf("denied search report %+v", r)
		}
		if day := findReport(t, res.UsageReports, "hits", api.Day); day.CurrentValue != 4 {
			t.Fatalf("hits counts search (its child): %+v", day)
		}
	})

	t.Run("report batch then authorize", func(t *testing.T) {
		now := time.Now().Unix()
		res, err := c.Report(threescale.Request{Auth: token, Service: "svc-ids", Transactions: []api.Transaction{
			{Params: api.Params{AppID: "a1"}, Metrics: api.Metrics{"hits": 60}, Timestamp: now},
			{Params: api.Params{AppID: "a-nokeys"}, Metrics: api.Metrics{"upload": 3}},
			{Params: api.Params{AppID: "a1"}, Metrics: api.Metrics{"search": 1}, Timestamp: now - 10},
		}})
		if err != nil || !res.Accepted {
			t.Fatalf("Report = %+v, %v", res, err)
		}
		auth, err := c.Authorize(threescale.Request{Auth: token, Service: "svc-ids",
			Transactions: []api.Transaction{{Params: api.Params{AppID: "a1", AppKey: "k1", Referrer: "www.example.com"}, Metrics: api.Metrics{"hits": 39}}}})
		if err != nil || !auth.Authorized {
			t.Fatalf("Authorize after report = %+v, %v", auth, err)
		}
		if day := findReport(t, auth.UsageReports, "hits", api.Day); day.CurrentValue != 61 {
			t.Fatalf("hits after the batch: %+v", day)
		}
		auth, err = c.Authorize(threescale.Request{Auth: token, Service: "svc-ids",
			Transactions: []api.Transaction{{Params: api.Params{AppID: "a1", AppKey: "k1", Referrer: "www.example.com"}, Metrics: api.Metrics{"hits": 40}}}})
		if err != nil || auth.Authorized || auth.RejectionReason != "usage limits are exceeded" {
			t.Fatalf("Authorize over the limit = %+v, %v", auth, err)
		}
	})

	t.Run("report errors", func(t *testing.T) {
		res, err := c.Report(threescale.Request{Auth: token, Service: "svc-ids", Transactions: []api.Transaction{
			{Params: api.Params{AppID: "a1"}, Metrics: api.Metrics{"hits": 1}},
			{Params: api.Params{AppID: "ghost"}, Metrics: api.Metrics{"hits": 1}},
		}})
		// Accepted, as 3scale does: the unknown app's transaction is
		// dropped and filed in the service's error log, a1's counts.
		if err != nil || !res.Accepted {
			t.Fatalf("Report with an unknown app = %+v, %v", res, err)
		}
		res, err = c.Report(threescale.Request{Auth: api.ClientAuth{Type: api.ServiceToken, Value: "st-b"}, Service: "svc-ids",
			Transactions: []api.Transaction{{Params: api.Params{AppID: "a1"}, Metrics: api.Metrics{"hits": 1}}}})
		if err != nil || res.Accepted || res.ErrorCode != "service_token_invalid" {
			t.Fatalf("Report with another tenant's token = %+v, %v", res, err)
		}
	})

	t.Run("extensions", func(t *testing.T) {
		res, err := c.AuthRep(threescale.Request{Auth: token, Service: "svc-a",
			Transactions: userKey("uk-a1", api.Metrics{"upload": 1}),
			Extensions:   api.Extensions{api.LimitExtension: "1", api.HierarchyExtension: "1"}})
		if err != nil || !res.Authorized {
			t.Fatalf("AuthRep with extensions = %+v, %v", res, err)
		}
		if res.RateLimits == nil || res.RateLimits.LimitRemaining != 99 || res.RateLimits.LimitReset <= 0 {
			t.Fatalf("rate limits %+v", res.RateLimits)
		}
		if got := strings.Join(res.Hierarchy["hits"], " "); got != "search upload" {
			t.Fatalf("hierarchy %v", res.Hierarchy)
		}
		// no_body with the rejection reason header: the client reads the
		// code from the header.
		res, err = c.AuthRep(threescale.Request{Auth: token, Service: "svc-a",
			Transactions: userKey("uk-susp", api.Metrics{"hits": 1}),
			Extensions:   api.Extensions{threescalehttp.NoBodyExtension: "1", threescalehttp.RejectionReasonHeaderExtension: "1"}})
		if err != nil || res.Authorized || res.ErrorCode != "application_not_active" {
			t.Fatalf("no_body denial = %+v, %v", res, err)
		}
		if body := res.RawResponse.(*http.Response); body.StatusCode != 409 {
			t.Fatalf("status %d", body.StatusCode)
		}
		// flat_usage: search does not count toward hits.
		res, err = c.AuthRep(threescale.Request{Auth: token, Service: "svc-a",
			Transactions: userKey("uk-free", api.Metrics{"search": 1}),
			Extensions:   api.Extensions{api.FlatUsageExtension: "1", threescalehttp.RejectionReasonHeaderExtension: "1"}})
		if err != nil || !res.Authorized {
			t.Fatalf("flat_usage = %+v, %v", res, err)
		}
	})

	t.Run("denials and errors", func(t *testing.T) {
		cases := []struct {
			name   string
			req    threescale.Request
			code   string
			reason string
		}{
			{"app key", threescale.Request{Auth: token, Service: "svc-ids", Transactions: []api.Transaction{{Params: api.Params{AppID: "a1", AppKey: "bad", Referrer: "*"}}}},
				"", "application key is invalid"},
			{"referrer", threescale.Request{Auth: token, Service: "svc-ids", Transactions: []api.Transaction{{Params: api.Params{AppID: "a1", AppKey: "k1", Referrer: "evil.com"}}}},
				"", `referrer "evil.com" is not allowed`},
			{"service", threescale.Request{Auth: token, Service: "svc-off", Transactions: userKey("uk-off", nil)}, "", "service is not active"},
			{"user key", threescale.Request{Auth: token, Service: "svc-a", Transactions: userKey("nope", nil)}, "user_key_invalid", ""},
			{"app id", threescale.Request{Auth: token, Service: "svc-ids", Transactions: []api.Transaction{{Params: api.Params{AppID: "nope"}}}}, "application_not_found", ""},
			{"metric", threescale.Request{Auth: token, Service: "svc-a", Transactions: userKey("uk-a1", api.Metrics{"nope": 1})}, "metric_invalid", ""},
			{"negative usage", threescale.Request{Auth: token, Service: "svc-a", Transactions: userKey("uk-a1", api.Metrics{"hits": -1})}, "usage_value_invalid", ""},
			{"token", threescale.Request{Auth: api.ClientAuth{Type: api.ServiceToken, Value: "st-b"}, Service: "svc-a", Transactions: userKey("uk-a1", nil)}, "service_token_invalid", ""},
			{"provider key", threescale.Request{Auth: api.ClientAuth{Type: api.ProviderKey, Value: "pk-b"}, Service: "svc-a", Transactions: userKey("uk-a1", nil)}, "service_id_invalid", ""},
			{"user_id", threescale.Request{Auth: token, Service: "svc-a", Transactions: []api.Transaction{{Params: api.Params{UserKey: "uk-a1", UserID: "bob"}}}}, "end_users_no_longer_supported", ""},
		}
		for _, tc := range cases {
			res, err := c.Authorize(tc.req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if res.Authorized || res.ErrorCode != tc.code || res.RejectionReason != tc.reason {
				t.Errorf("%s: got authorized=%v code=%q reason=%q, want code=%q reason=%q",
					tc.name, res.Authorized, res.ErrorCode, res.RejectionReason, tc.code, tc.reason)
			}
		}
	})

	t.Run("oauth", func(t *testing.T) {
		res, err := c.OauthAuthRep(threescale.Request{Auth: token, Service: "svc-oauth",
			Transactions: []api.Transaction{{Params: api.Params{AppID: "o1"}, Metrics: api.Metrics{"hits": 1}}}})
		if err != nil || !res.Authorized {
			t.Fatalf("OauthAuthRep = %+v, %v", res, err)
		}
		raw := res.RawResponse.(*http.Response)
		if ct := raw.Header.Get("Content-Type"); ct != ContentType {
			t.Fatalf("content type %q", ct)
		}
		res, err = c.OauthAuthorize(threescale.Request{Auth: token, Service: "svc-oauth",
			Transactions: []api.Transaction{{Params: api.Params{AppID: "nope"}}}})
		if err != nil || res.Authorized || res.ErrorCode != "application_not_found" {
			t.Fatalf("OauthAuthorize unknown app = %+v, %v", res, err)
		}
	})
}

func findReport(t *testing.T, reps api.UsageReports, metric string, p api.Period) api.UsageReport {
	t.Helper()
	for _, r := range reps[metric] {
		if r.PeriodWindow.Period == p {
			return r
		}
	}
	t.Fatalf("no %s report for period %v in %+v", metric, p, reps)
	return api.UsageReport{}
}

// TestServerLimits sends oversized requests over TCP to a server built by
// NewServer: each gets a clear 4xx with a 3scale-style code, and the server
// keeps serving.
func TestServerLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a TCP server")
	}
	e := newEnv(t)
	base := startTCP(t, e)
	hc := &http.Client{Timeout: 5 * time.Second}
	do := func(method, url, ctype string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %.60s: %v", method, url, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != ContentType {
			t.Errorf("content type %q", ct)
		}
		return resp.StatusCode, errorCode(b.Bytes())
	}
	auth := base + "/transactions/authrep.xml?" + stA + "&user_key=uk-a1"
	cases := []struct {
		name, method, url, ctype string
		body                     []byte
		status                   int
		code                     string
	}{
		{"URL of 16 KiB", "GET", auth + "&pad=" + strings.Repeat("x", 16<<10), "", nil, 200, ""},
		{"URL at the limit", "GET", auth + "&pad=" + strings.Repeat("x", MaxURLLength-len(auth)+len(base)-len("&pad=")), "", nil, 200, ""},
		{"URL one byte over the limit", "GET", auth + "&pad=" + strings.Repeat("x", MaxURLLength-len(auth)+len(base)-len("&pad=")+1), "", nil, 414, "request_uri_too_long"},
		// A URL the read buffer cannot hold is still a URL too long: 414,
		// refused before it is read whole.
		{"URL over the read buffer", "GET", auth + "&pad=" + strings.Repeat("x", MaxURLLength+32<<10), "", nil, 414, "request_uri_too_long"},
		{"1001 transactions", "POST", base + "/transactions.xml", "application/x-www-form-urlencoded", []byte(stA + manyTxns(1001)), 400, "bad_request"},
		{"65 usage entries", "GET", auth + strings.Repeat("&usage[hits]=1", 1) + manyUsageQuery(65), "", nil, 400, "bad_request"},
		{"65 usage entries in a transaction", "POST", base + "/transactions.xml", "application/x-www-form-urlencoded",
			[]byte(stA + "&transactions[0][user_key]=uk-a1" + strings.ReplaceAll(manyUsageQuery(65), "usage[", "transactions[0][usage][")), 400, "bad_request"},
	}
	for _, c := range cases {
		status, code := do(c.method, c.url, c.ctype, c.body)
		if status != c.status || code != c.code {
			t.Errorf("%s: got %d %q, want %d %q", c.name, status, code, c.status, c.code)
		}
	}
	// Headers over their own bound after a short URL: 431 (the read buffer
	// is sized for a long request line, not for headers).
	for _, pad := range []int{MaxServerHeaderBytes, 4 * MaxServerHeaderBytes} {
		req, _ := http.NewRequest("GET", auth, nil)
		req.Header.Set("X-Pad", strings.Repeat("y", pad))
		if resp, err := hc.Do(req); err != nil {
			t.Errorf("%d bytes of headers: %v", pad, err)
		} else {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 431 || errorCode(b.Bytes()) != "request_header_too_large" {
				t.Errorf("%d bytes of headers: got %d %s, want 431 request_header_too_large", pad, resp.StatusCode, b.Bytes())
			}
		}
	}
	// A body over 1 MiB: fasthttp refuses it from its Content-Length before
	// reading it (and then closes the connection, which would reset a client
	// still writing), so announce it on a raw connection and read the answer.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /transactions.xml HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", MaxBodySize+1)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to an oversized body: %v", err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != 413 || errorCode(body.Bytes()) != "request_entity_too_large" || resp.Header.Get("Content-Type") != ContentType {
		t.Errorf("body over 1 MiB: got %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body.Bytes())
	}
	// Still serving.
	if status, code := do("GET", auth+"&usage[hits]=1", "", nil); status != 200 {
		t.Fatalf("after the limits: %d %s", status, code)
	}
	// A 1,000-transaction batch within 1 MiB is fine.
	if status, code := do("POST", base+"/transactions.xml", "application/x-www-form-urlencoded", []byte(stA+manyTxns(1000))); status != 202 {
		t.Fatalf("1000 transactions: %d %s", status, code)
	}
}

func manyUsageQuery(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("&usage[m")
		b.WriteString(strings.Repeat("x", i%3))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + i/26)))
		b.WriteString("]=1")
	}
	return b.String()
}

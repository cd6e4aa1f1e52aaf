package smapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// apisonatorDocument is the test catalog with the applications 3scale's
// own integration tests set up: an OAuth service with apps without keys,
// with one key and with two.
func apisonatorDocument() *catalog.Document {
	doc := testDocument()
	for i := range doc.Tenants[0].Services {
		svc := &doc.Tenants[0].Services[i]
		if svc.ID == "svc-oauth" {
			svc.Applications = append(svc.Applications,
				catalog.AppSpec{ID: "o-nokeys", Plan: "basic", RedirectURL: "http://3scale.net"},
				catalog.AppSpec{ID: "o-two", Plan: "basic", Keys: []string{"foo", "bar"}, RedirectURL: "http://3scale.net"},
			)
		}
	}
	return doc
}

// apiCase is one call of 3scale's integration tests (apisonator
// test/integration/...), written for Sluice's test catalog: the call, then
// what the answer must hold.
type apiCase struct {
	name        string   // the test file and test it comes from
	before      []string // calls made first ("POST " + URI for a report), each must succeed
	method      string   // default GET
	uri         string
	contentType string
	options     string // 3scale-options
	status      int
	code        string   // <error code=...>, or "" for none
	reason      string   // <reason>, or "" for none
	contains    []string // in the body
	lacks       []string // not in the body
	headers     map[string]string
	noHeaders   []string
	emptyBody   bool
	// errorLog, if set, is read after the call (with the service's token)
	// and must hold these strings.
	errorLog []string
}

const (
	oauthSvc = "service_token=st-a&service_id=svc-oauth"
	idsSvc   = "service_token=st-a&service_id=svc-ids"
)

// apisonatorCases translates the cases of apisonator's integration tests
// for authorize, authrep, oauth and report that concern behaviour gateways
// and clients depend on. Where Sluice differs on purpose (see the package
// doc) the case says so and checks Sluice's answer.
func apisonatorCases() []apiCase {
	ts := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, " ", "+"), "+-", "+%2D") }
	const b1 = "service_token=st-b&service_id=svc-b&app_id=b1&app_key=kb"
	hitsDay := func(n int) string {
		return `<usage_report metric="hits" period="day"><period_start>2026-05-15 00:00:00 +0000</period_start><period_end>2026-05-16 00:00:00 +0000</period_end><max_value>100</max_value><current_value>` + fmt.Sprint(n) + `</current_value>`
	}
	report := func(txns string) string { return "/transactions.xml?" + stA + txns }
	return []apiCase{
		// authrep/set_usage_test.rb, authorize/set_usage_test.rb,
		// authorize/set_usage_failures_test.rb: #N is checked against the
		// limits and set; a set on a child sets its parent.
		{name: "set usage: #2 after 99", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=99"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[hits]=%232", status: 200, contains: []string{hitsDay(2)}},
		{name: "set usage: #2 after a report of #101", before: []string{"POST /transactions.xml?service_token=st-b&service_id=svc-b&transactions[0][app_id]=b1&transactions[0][usage][hits]=%23101"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[hits]=%232", status: 200, contains: []string{hitsDay(2)}},
		{name: "set usage: 98 on top of #2", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=50", "/transactions/authrep.xml?" + b1 + "&usage[hits]=%232"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[hits]=98", status: 200, contains: []string{hitsDay(100)}},
		{name: "set usage: 98 more is over", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=%232", "/transactions/authrep.xml?" + b1 + "&usage[hits]=98"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[hits]=98", status: 409, reason: "usage limits are exceeded", contains: []string{hitsDay(100)}},
		{name: "set usage: a set on a child sets the parent", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=5"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[upload]=%2310", status: 200, contains: []string{hitsDay(10)}},
		{name: "set usage: flat_usage keeps a child's set to itself", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=5"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[upload]=%2310", options: "flat_usage=1", status: 200, contains: []string{hitsDay(5)}},
		{name: "set usage: a set on a child in a report sets the parent", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=5",
			"POST /transactions.xml?service_token=st-b&service_id=svc-b&transactions[0][app_id]=b1&transactions[0][usage][upload]=%2340"},
			uri: "/transactions/authorize.xml?" + b1, status: 200, contains: []string{hitsDay(40)}},
		{name: "set usage failures: over the limit", uri: "/transactions/authorize.xml?" + b1 + "&usage[hits]=%23101", status: 409, reason: "usage limits are exceeded", contains: []string{hitsDay(0)}},
		{name: "set usage failures: authrep over the limit counts nothing", before: []string{"/transactions/authrep.xml?" + b1 + "&usage[hits]=3"},
			uri: "/transactions/authrep.xml?" + b1 + "&usage[hits]=%23101", status: 409, reason: "usage limits are exceeded", contains: []string{hitsDay(3)}},
		{name: "set usage failures: a bad set value", uri: "/transactions/authorize.xml?" + b1 + "&usage[hits]=%23x", status: 403, code: "usage_value_invalid"},

		// oauth/application_keys_test.rb
		{name: "oauth keys: no key defined nor passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-nokeys", status: 200, contains: []string{"<authorized>true</authorized>"}},
		{name: "oauth keys: no key defined, empty one passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-nokeys&app_key=", status: 409, reason: "application key is missing"},
		{name: "oauth keys: the key passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1&app_key=secret", status: 200},
		{name: "oauth keys: one of two keys passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-two&app_key=bar", status: 200},
		{name: "oauth keys: key defined, not passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1", status: 200},
		// 3scale: application key "wrong" is invalid. Sluice does not
		// quote a client secret back (package doc).
		{name: "oauth keys: wrong key passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1&app_key=wrong", status: 409, reason: "application key is invalid", lacks: []string{"wrong"}},
		{name: "oauth keys: empty key passed", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1&app_key=", status: 409, reason: "application key is missing"},
		{name: "oauth keys: wrong key on oauth_authrep", uri: "/transactions/oauth_authrep.xml?" + oauthSvc + "&app_id=o1&app_key=wrong&usage[hits]=1", status: 409, reason: "application key is invalid"},

		// authrep/application_keys_test.rb: authrep.xml on an OAuth
		// service (OpenID Connect gateways) checks a key only when sent.
		{name: "authrep keys: oauth service, key defined, not passed", uri: "/transactions/authrep.xml?" + oauthSvc + "&app_id=o1&usage[hits]=1", status: 200},
		{name: "authrep keys: oauth service, key matches", uri: "/transactions/authrep.xml?" + oauthSvc + "&app_id=o-two&app_key=foo&usage[hits]=1", status: 200},
		{name: "authrep keys: oauth service, wrong key", uri: "/transactions/authrep.xml?" + oauthSvc + "&app_id=o1&app_key=invalid_key", status: 409, reason: "application key is invalid"},
		{name: "authorize keys: oauth service, key defined, not passed", uri: "/transactions/authorize.xml?" + oauthSvc + "&app_id=o1", status: 200},
		{name: "authrep keys: app_id service, key defined, not passed", uri: "/transactions/authrep.xml?" + idsSvc + "&app_id=a1&referrer=*", status: 409, reason: "application key is missing"},
		{name: "authrep keys: app_id service, empty key", uri: "/transactions/authrep.xml?" + idsSvc + "&app_id=a1&app_key=&referrer=*", status: 409, reason: "application key is missing"},
		{name: "authrep keys: app_id service, wrong key", uri: "/transactions/authrep.xml?" + idsSvc + "&app_id=a1&app_key=nope&referrer=*", status: 409, reason: "application key is invalid", lacks: []string{"nope"}},
		{name: "authrep keys: app_id service, app without keys", uri: "/transactions/authrep.xml?" + idsSvc + "&app_id=a-nokeys", status: 200},

		// oauth/redirect_url_test.rb
		{name: "redirect: not passed, defined", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1", status: 200, contains: []string{"<redirect_url>https://example.com/cb</redirect_url>"}},
		{name: "redirect: redirect_url matches", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1&redirect_url=https://example.com/cb", status: 200,
			contains: []string{"<redirect_url>https://example.com/cb</redirect_url>"}},
		{name: "redirect: redirect_uri matches, echoed as redirect_uri", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o1&redirect_uri=https://example.com/cb", status: 200,
			contains: []string{"<redirect_uri>https://example.com/cb</redirect_uri>"}, lacks: []string{"redirect_url"}},
		{name: "redirect: redirect_url wrong", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-nokeys&redirect_url=http://3scale.net2", status: 409, reason: `redirect_url "http://3scale.net2" is invalid`},
		{name: "redirect: redirect_uri wrong", uri: "/transactions/oauth_authrep.xml?" + oauthSvc + "&app_id=o-nokeys&redirect_uri=http://3scale.net2", status: 409, reason: `redirect_uri "http://3scale.net2" is invalid`,
			contains: []string{"<redirect_uri>http://3scale.net</redirect_uri>"}},
		{name: "redirect: redirect_url wins over a wrong redirect_uri", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-nokeys&redirect_url=http://3scale.net&redirect_uri=http://3scale.net2", status: 200,
			contains: []string{"<redirect_url>http://3scale.net</redirect_url>"}},
		{name: "redirect: a wrong redirect_url wins over a right redirect_uri", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-nokeys&redirect_url=http://3scale.net2&redirect_uri=http://3scale.net", status: 409,
			reason: `redirect_url "http://3scale.net2" is invalid`},
		{name: "redirect: empty redirect_url checks nothing", uri: "/transactions/oauth_authorize.xml?" + oauthSvc + "&app_id=o-nokeys&redirect_url=", status: 200},

		// authrep/limit_headers_test.rb
		{name: "limit headers: no limits", uri: "/transactions/authrep.xml?" + stA + "&user_key=uk-free&usage[hits]=10", options: "limit_headers=1", status: 200,
			headers: map[string]string{"3scale-limit-remaining": "-1", "3scale-limit-reset": "-1"}, noHeaders: []string{"3scale-limit-max-value"}},
		{name: "limit headers: the most constrained window", uri: "/transactions/authrep.xml?service_token=st-b&service_id=svc-b&app_id=b1&app_key=kb&usage[upload]=2", options: "limit_headers=1", status: 200,
			headers: map[string]string{"3scale-limit-remaining": "49", "3scale-limit-reset": "48580", "3scale-limit-max-value": "100"}},
		{name: "limit headers: none on errors", uri: "/transactions/authorize.xml?" + stA + "&user_key=uk-a1&usage[invalid_metric]=1", options: "limit_headers=1", status: 404, code: "metric_invalid",
			noHeaders: []string{"3scale-limit-remaining", "3scale-limit-reset", "3scale-limit-max-value"}},
		{name: "limit headers: none unless asked", uri: "/transactions/authrep.xml?" + stA + "&user_key=uk-a1", status: 200,
			noHeaders: []string{"3scale-limit-remaining", "3scale-limit-reset", "3scale-limit-max-value"}},

		// authrep/basic_test.rb, authorize/basic_test.rb: no_body, also as
		// a parameter.
		{name: "no_body parameter", uri: "/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[hits]=1&no_body=1", status: 200, emptyBody: true},
		{name: "no_body=true parameter", uri: "/transactions/authorize.xml?" + stA + "&user_key=uk-a1&no_body=true", status: 200, emptyBody: true},
		{name: "no_body=false parameter", uri: "/transactions/authorize.xml?" + stA + "&user_key=uk-a1&no_body=false", status: 200, contains: []string{"<authorized>true</authorized>"}},
		{name: "no_body header wins over the parameter", uri: "/transactions/authorize.xml?" + stA + "&user_key=uk-a1&no_body=1", options: "no_body=0", status: 200, contains: []string{"<authorized>true</authorized>"}},
		{name: "no_body with an unknown metric", uri: "/transactions/authorize.xml?" + stA + "&user_key=uk-a1&usage[hits]=1&usage[non_existing]=1", options: "no_body=1", status: 404, emptyBody: true},
		{name: "no_body on a denial", uri: "/transactions/authrep.xml?" + stA + "&user_key=uk-susp&no_body=1", status: 409, emptyBody: true},

		// report_test.rb: timestamps (the test clock is 2026-05-15 10:30:20 UTC).
		{name: "report: local timestamp with a colon offset", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + ts("2026-05-15 06:30:25 -02:00")), status: 202,
			errorLog: []string{`<errors count="0">`}},
		{name: "report: local timestamp", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + ts("2026-05-15 11:55:45 %2B0200")), status: 202,
			errorLog: []string{`<errors count="0">`}},
		{name: "report: UTC timestamp", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + ts("2026-05-15 09:59:25 UTC")), status: 202},
		{name: "report: timestamp without a zone", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + ts("2026-05-15 09:59:30")), status: 202},
		{name: "report: loose date", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=2026/05/15"), status: 202,
			errorLog: []string{`<errors count="0">`}},
		{name: "report: garbage timestamp is now", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=2012garbage2012"), status: 202,
			errorLog: []string{`<errors count="0">`}},
		{name: "report: blank timestamp is now", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]="), status: 202},
		{name: "report: timestamp too old", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + ts("2026-05-14 10:30:19 UTC")), status: 202,
			errorLog: []string{`code="transaction_timestamp_too_old"`, "reporting transactions older than 86400 seconds is not allowed"}},
		{name: "report: timestamp too far in the future", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + ts("2026-05-15 11:30:21 UTC")), status: 202,
			errorLog: []string{`code="transaction_timestamp_too_new"`, "reporting transactions more than 3600 seconds in the future is not allowed"}},

		// report_test.rb: errors 3scale files for the provider instead of
		// answering them.
		{name: "report: invalid application id", method: "POST", uri: "/transactions.xml?" + idsSvc + "&transactions[0][app_id]=boo&transactions[0][usage][hits]=1", status: 202,
			errorLog: []string{`<errors count="1"><error code="application_not_found"`, `application with id=&quot;boo&quot; was not found`}},
		{name: "report: invalid metric name", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][nukes]=1"), status: 202,
			errorLog: []string{`code="metric_invalid"`, `metric &quot;nukes&quot; is invalid`}},
		{name: "report: empty usage value", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=+"), status: 202,
			errorLog: []string{`code="usage_value_invalid"`, `usage value for metric &quot;hits&quot; can not be empty`}},
		{name: "report: invalid usage value", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=tons!"), status: 202,
			errorLog: []string{`code="usage_value_invalid"`, `usage value &quot;tons!&quot; for metric &quot;hits&quot; is invalid`}},
		{name: "report: invalid user key", method: "POST", uri: report("&transactions[0][user_key]=nope&transactions[0][usage][hits]=1"), status: 202,
			errorLog: []string{`code="user_key_invalid"`, "user key is invalid"}, lacks: []string{"nope"}},
		{name: "report: app id and user key", method: "POST", uri: "/transactions.xml?" + idsSvc + "&transactions[0][app_id]=a1&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1", status: 202,
			errorLog: []string{`code="authentication_error"`}},
		{name: "report: application not active", method: "POST", uri: report("&transactions[0][user_key]=uk-susp&transactions[0][usage][hits]=1"), status: 202,
			errorLog: []string{`<errors count="0">`}},
		{name: "report: wrong content type without a body", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1"), contentType: "application/json", status: 400, code: "content_type_invalid"},
		{name: "report: transactions blank", method: "POST", uri: "/transactions.xml?" + stA, status: 400, code: "transactions_is_blank"},
		{name: "report: invalid provider key", method: "POST", uri: "/transactions.xml?provider_key=nope&transactions[0][user_key]=uk-a1", status: 403, code: "provider_key_invalid_or_service_missing"},
		{name: "report: user_id", method: "POST", uri: report("&transactions[0][user_key]=uk-a1&transactions[0][user_id]=bob"), status: 400, code: "end_users_no_longer_supported"},
	}
}

// TestApisonatorIntegrationCases runs apisonatorCases against a server
// over HTTP, each on a fresh catalog and counters.
func TestApisonatorIntegrationCases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts TCP servers")
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	// One listener; each case swaps in a fresh server (catalog, counters,
	// error log) behind it.
	var cur atomic.Pointer[env]
	cur.Store(newEnvWith(t, apisonatorDocument()))
	base := startTCPHandler(t, func(ctx *fasthttp.RequestCtx) { cur.Load().srv.Handler(ctx) })
	for _, c := range apisonatorCases() {
		t.Run(c.name, func(t *testing.T) {
			cur.Store(newEnvWith(t, apisonatorDocument()))
			for _, b := range c.before {
				method, uri := "GET", b
				if rest, ok := strings.CutPrefix(b, "POST "); ok {
					method, uri = "POST", rest
				}
				req, err := http.NewRequest(method, base+uri, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					t.Fatalf("%s %s: %d %s", method, uri, resp.StatusCode, body)
				}
			}
			method := c.method
			if method == "" {
				method = "GET"
			}
			req, err := http.NewRequest(method, base+c.uri, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			if c.options != "" {
				req.Header.Set("3scale-options", c.options)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, body)
			}
			if got := errorCode(body); got != c.code {
				t.Errorf("error code %q, want %q; body %s", got, c.code, body)
			}
			if c.reason != "" && !bytes.Contains(body, []byte("<reason>"+c.reason+"</reason>")) {
				t.Errorf("want reason %q; body %s", c.reason, body)
			}
			if c.emptyBody && len(body) != 0 {
				t.Errorf("want an empty body; got %s", body)
			}
			for _, s := range c.contains {
				if !bytes.Contains(body, []byte(s)) {
					t.Errorf("body lacks %q: %s", s, body)
				}
			}
			for _, s := range c.lacks {
				if bytes.Contains(body, []byte(s)) {
					t.Errorf("body holds %q: %s", s, body)
				}
			}
			for k, v := range c.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			for _, k := range c.noHeaders {
				if _, ok := resp.Header[http.CanonicalHeaderKey(k)]; ok {
					t.Errorf("header %s sent: %q", k, resp.Header.Get(k))
				}
			}
			if c.errorLog == nil {
				return
			}
			sid := "svc-a"
			if strings.Contains(c.uri, "svc-ids") {
				sid = "svc-ids"
			}
			lr, err := hc.Get(base + "/services/" + sid + "/errors.xml?service_token=st-a")
			if err != nil {
				t.Fatal(err)
			}
			log, _ := io.ReadAll(lr.Body)
			lr.Body.Close()
			for _, s := range append(c.errorLog, ContentType) {
				if s == ContentType {
					if lr.Header.Get("Content-Type") != ContentType {
						t.Errorf("error log content type %q", lr.Header.Get("Content-Type"))
					}
					continue
				}
				if !bytes.Contains(log, []byte(s)) {
					t.Errorf("error log lacks %q: %s", s, log)
				}
			}
			for _, s := range c.lacks {
				if bytes.Contains(log, []byte(s)) {
					t.Errorf("error log holds %q: %s", s, log)
				}
			}
		})
	}
}

// TestReportDropsBadTransactions: in a batch, transactions 3scale rejects
// only in its worker are dropped alone; the others count (events and
// counters), the answer is 202, and the error log says which were dropped.
func TestReportDropsBadTransactions(t *testing.T) {
	e := newEnv(t)
	good := "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[1][user_key]=uk-a1&transactions[1][usage][search]=2" +
		"&transactions[1][timestamp]=" + strings.ReplaceAll("2026-05-15 08:30:20 -02:00", " ", "+")
	bad := "&transactions[2][user_key]=nope&transactions[2][usage][hits]=5&transactions[3][user_key]=uk-a1&transactions[3][usage][nukes]=1" +
		"&transactions[4][user_key]=uk-a1&transactions[4][usage][hits]=7&transactions[4][timestamp]=1"
	resp := e.do(request{method: "POST", uri: "/transactions.xml", contentType: "application/x-www-form-urlencoded", body: stA + good + bad})
	mustStatus(t, resp, 202)
	evs := e.sink.Events()
	if len(evs) != 2 {
		t.Fatalf("%d events, want the 2 good transactions'", len(evs))
	}
	if evs[1].TS != fixedNow.UnixMilli() {
		t.Errorf("a -02:00 timestamp read as %d, want %d", evs[1].TS, fixedNow.UnixMilli())
	}
	auth := e.get("/transactions/authorize.xml?"+stA+"&user_key=uk-a1", "")
	if !bytes.Contains(auth.Body(), []byte(`<usage_report metric="hits" period="day"><period_start>2026-05-15 00:00:00 +0000</period_start><period_end>2026-05-16 00:00:00 +0000</period_end><max_value>100</max_value><current_value>3</current_value>`)) {
		t.Fatalf("hits after the batch (1 + search 2): %s", auth.Body())
	}
	log := e.get("/services/svc-a/errors.xml?service_token=st-a", "")
	for _, want := range []string{`<errors count="3">`, `code="transaction_timestamp_too_old" timestamp="2026-05-15 10:30:20 +0000" transaction="4"`,
		`code="metric_invalid" timestamp="2026-05-15 10:30:20 +0000" transaction="3"`, `code="user_key_invalid" timestamp="2026-05-15 10:30:20 +0000" transaction="2"`} {
		if !bytes.Contains(log.Body(), []byte(want)) {
			t.Errorf("error log lacks %s: %s", want, log.Body())
		}
	}
	// DELETE forgets them; another tenant's token reads nothing.
	mustStatus(t, e.do(request{method: "DELETE", uri: "/services/svc-a/errors.xml?service_token=st-a"}), 200)
	if log := e.get("/services/svc-a/errors.xml?provider_key=pk-a", ""); !bytes.Contains(log.Body(), []byte(`<errors count="0">`)) {
		t.Errorf("after DELETE: %s", log.Body())
	}
	mustStatus(t, e.get("/services/svc-a/errors.xml?service_token=st-b", ""), 403)
}

// TestErrorLogIsBounded: a service keeps its last MaxServiceErrors errors,
// newest first, and quoted values are cut short.
func TestErrorLogIsBounded(t *testing.T) {
	e := newEnv(t)
	svc := e.snap.Services["svc-a"]
	long := bytes.Repeat([]byte("x"), 10*maxQuoted)
	for i := 0; i < MaxServiceErrors+5; i++ {
		e.srv.errs.add(svc, int64(i), long, parseError{code: errApplicationNotFound, arg: long})
	}
	list, total := e.srv.errs.page(nil, svc, 0, 3)
	if total != MaxServiceErrors || len(list) != 3 || list[0].at != MaxServiceErrors+4 || list[2].at != MaxServiceErrors+2 {
		t.Fatalf("total %d, first %+v", total, list)
	}
	if len(list[0].msg) > 2*maxQuoted || len(list[0].label) > maxQuoted {
		t.Fatalf("quoted values not cut: %d-byte message, %d-byte label", len(list[0].msg), len(list[0].label))
	}
	list, _ = e.srv.errs.page(nil, svc, MaxServiceErrors-1, 10)
	if len(list) != 1 || list[0].at != 5 {
		t.Fatalf("oldest kept: %+v", list)
	}
}

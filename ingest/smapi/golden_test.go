package smapi

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	stA   = "service_token=st-a&service_id=svc-a"
	stIDs = "service_token=st-a&service_id=svc-ids"
	stO   = "service_token=st-a&service_id=svc-oauth"
)

type goldenCase struct {
	name     string
	req      request
	setup    func(e *env)
	notReady bool
}

func authrepN(e *env, q string, n int) {
	for i := 0; i < n; i++ {
		resp := e.get("/transactions/authrep.xml?"+q, "")
		mustStatus(e.t, resp, 200)
	}
}

func goldenCases() []goldenCase {
	get := func(uri string) request { return request{uri: uri} }
	withOpts := func(uri, opts string) request {
		return request{uri: uri, headers: [][2]string{{"3scale-options", opts}}}
	}
	manyUsage := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString("&usage[m")
			b.WriteString(strconv.Itoa(i))
			b.WriteString("]=1")
		}
		return b.String()
	}
	return []goldenCase{
		// Success.
		{name: "authorize_ok", req: get("/transactions/authorize.xml?" + stA + "&user_key=uk-a1&usage[hits]=1"),
			setup: func(e *env) { authrepN(e, stA+"&user_key=uk-a1&usage[search]=1", 2) }},
		{name: "authorize_no_usage", req: get("/transactions/authorize.xml?" + stA + "&user_key=uk-a1")},
		{name: "authrep_ok", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[search]=2&usage[hits]=1&log[code]=200"),
			setup: func(e *env) { authrepN(e, stA+"&user_key=uk-a1&usage[hits]=3", 1) }},
		{name: "authrep_encoded_brackets", req: get("/transactions/authrep.xml?service_token=st-a&service_id=svc-a&user_key=uk-a1&usage%5Bhits%5D=2")},
		{name: "authrep_provider_key_default_service", req: get("/transactions/authrep.xml?provider_key=pk-a&user_key=uk-a1&usage[hits]=1")},
		{name: "authrep_provider_key_service_id", req: get("/transactions/authrep.xml?provider_key=pk-a&service_id=svc-ids&app_id=a1&app_key=k1&referrer=www.example.com&usage[hits]=1")},
		{name: "authrep_app_without_keys", req: get("/transactions/authrep.xml?" + stIDs + "&app_id=a-nokeys&usage[hits]=1")},
		{name: "authrep_referrer_bypass", req: get("/transactions/authrep.xml?" + stIDs + "&app_id=a1&app_key=k%3C2%3E&referrer=*&usage[hits]=1")},
		{name: "authorize_plan_without_limits", req: get("/transactions/authorize.xml?" + stA + "&user_key=uk-free&usage[hits]=1")},
		{name: "authorize_exceeded_after_report", req: get("/transactions/authorize.xml?" + stA + "&user_key=uk-a1"),
			setup: func(e *env) {
				mustStatus(e.t, e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=150"}), 202)
			}},

		// Denials (409), one per reason.
		{name: "deny_limits_exceeded", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[search]=2"),
			setup: func(e *env) { authrepN(e, stA+"&user_key=uk-a1&usage[search]=4", 1) }},
		{name: "deny_application_key_invalid", req: get("/transactions/authrep.xml?" + stIDs + "&app_id=a1&app_key=wrong&usage[hits]=1")},
		{name: "deny_application_key_missing", req: get("/transactions/authorize.xml?" + stIDs + "&app_id=a1")},
		{name: "deny_referrer_not_allowed", req: get("/transactions/authrep.xml?" + stIDs + "&app_id=a1&app_key=k1&referrer=evil.com&usage[hits]=1")},
		{name: "deny_referrer_missing", req: get("/transactions/authorize.xml?" + stIDs + "&app_id=a1&app_key=k1")},
		{name: "deny_application_not_active", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-susp&usage[hits]=1")},
		{name: "deny_service_not_active", req: get("/transactions/authrep.xml?service_token=st-a&service_id=svc-off&user_key=uk-off&usage[hits]=1")},

		// Errors, one per code of 3scale's table, and Sluice's own.
		{name: "err_provider_key_invalid", req: get("/transactions/authrep.xml?provider_key=nope&service_id=svc-a&user_key=uk-a1")},
		{name: "err_provider_key_invalid_or_service_missing", req: get("/transactions/authrep.xml?provider_key=nope&user_key=uk-a1")},
		{name: "err_service_id_invalid", req: get("/transactions/authrep.xml?provider_key=pk-a&service_id=svc-b&app_id=b1")},
		{name: "err_service_token_invalid", req: get("/transactions/authrep.xml?service_token=st-a&service_id=svc-b&app_id=b1")},
		{name: "err_provider_key_or_service_token_required", req: get("/transactions/authrep.xml?service_id=svc-a&user_key=uk-a1")},
		{name: "err_user_key_invalid", req: get("/transactions/authrep.xml?" + stA + "&user_key=nope")},
		{name: "err_user_key_missing", req: get("/transactions/authrep.xml?" + stA)},
		{name: "err_authentication_error", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&app_id=app1")},
		{name: "err_usage_value_invalid", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[hits]=1x")},
		{name: "err_usage_value_empty", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[hits]=")},
		{name: "authrep_set_usage", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[search]=%233"),
			setup: func(e *env) { authrepN(e, stA+"&user_key=uk-a1&usage[hits]=7", 1) }},
		{name: "deny_set_usage_over_limit", req: get("/transactions/authorize.xml?" + stA + "&user_key=uk-a1&usage[search]=%236")},
		{name: "err_application_not_found", req: get("/transactions/authrep.xml?" + stIDs + "&app_id=nope&app_key=k1")},
		{name: "err_metric_invalid", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&usage[nope]=1")},
		{name: "err_service_id_missing", req: get("/transactions/authrep.xml?service_token=st-a&user_key=uk-a1")},
		{name: "err_not_valid_data", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-%FF")},
		{name: "err_referrer_filter_invalid", req: get("/transactions/authrep.xml?" + stIDs + "&app_id=a1&app_key=k1&referrer=x.example.com"),
			setup: func(e *env) { e.snap.Services["svc-ids"].App("a1").ReferrerFilters = []string{""} }},
		{name: "err_bad_request_too_much_usage", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1" + manyUsage(65))},
		{name: "err_end_users_no_longer_supported", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&user_id=alice")},
		{name: "err_content_type_invalid", req: request{method: "POST", uri: "/transactions.xml", contentType: "application/json", body: `{"transactions":[]}`}},
		{name: "err_transactions_is_blank", req: request{method: "POST", uri: "/transactions.xml?" + stA}},
		{name: "err_transactions_format_invalid", req: request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions=abc"}},
		{name: "err_transactions_has_nil_transaction", req: request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[1]="}},
		// A batch whose bad transactions are dropped (202), then the
		// service's error log that lists them, newest first.
		{name: "report_errors_list", req: get("/services/svc-a/errors.xml?service_token=st-a"), setup: func(e *env) {
			resp := e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][timestamp]=2026-05-13+10:00:00+%2B0000" +
				"&transactions[1][user_key]=uk-a1&transactions[1][timestamp]=2026-05-15T12:00:00Z&transactions[2][user_key]=nope&transactions[3][user_key]=uk-a1&transactions[3][usage][hits]=1" +
				"&transactions[4][user_key]=uk-a1&transactions[4][usage][nukes]=1&transactions[5][user_key]=uk-a1&transactions[5][usage][hits]=tons!" +
				"&transactions[6][app_id]=<b>&transactions[6][user_key]=uk-a1"})
			mustStatus(e.t, resp, 202)
		}},
		{name: "report_errors_page", req: get("/services/svc-a/errors.xml?service_token=st-a&page=2&per_page=4"), setup: func(e *env) {
			resp := e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=a&transactions[1][user_key]=b&transactions[2][user_key]=c" +
				"&transactions[3][user_key]=d&transactions[4][user_key]=e&transactions[5][user_key]=f"})
			mustStatus(e.t, resp, 202)
		}},
		{name: "report_errors_empty", req: get("/services/svc-ids/errors.xml?provider_key=pk-a")},
		{name: "err_report_errors_other_tenant", req: get("/services/svc-b/errors.xml?service_token=st-a")},
		{name: "err_report_errors_paging", req: get("/services/svc-a/errors.xml?service_token=st-a&per_page=1001")},
		{name: "err_report_errors_method", req: request{method: "POST", uri: "/services/svc-a/errors.xml?service_token=st-a"}},
		{name: "err_report_too_many_transactions", req: request{method: "POST", uri: "/transactions.xml", contentType: "application/x-www-form-urlencoded", body: stA + manyTxns(1001)}},
		{name: "err_request_uri_too_long", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1&pad=" + strings.Repeat("x", MaxURLLength))},
		{name: "err_request_entity_too_large", req: request{method: "POST", uri: "/transactions.xml", contentType: "application/x-www-form-urlencoded", body: stA + "&pad=" + strings.Repeat("x", MaxBodySize)}},
		{name: "err_not_found", req: get("/transactions/nope.xml")},
		{name: "err_method_not_allowed", req: request{method: "POST", uri: "/transactions/authrep.xml?" + stA}},
		{name: "err_report_method_not_allowed", req: get("/transactions.xml")},
		{name: "err_not_ready", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-a1"), notReady: true},
		{name: "err_usage_overflow_children", req: get("/transactions/authrep.xml?" + stA + "&user_key=uk-free&usage[search]=9223372036854775807&usage[upload]=1")},
		{name: "err_usage_overflow_report", req: request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=9223372036854775807"},
			setup: func(e *env) {
				mustStatus(e.t, e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=9223372036854775807"}), 202)
			}},
		{name: "err_usage_overflow_report_partial", req: request{method: "POST", uri: "/transactions.xml?" + stA +
			"&transactions[0][user_key]=uk-a2&transactions[0][usage][hits]=1&transactions[a][user_key]=uk-a1&transactions[a][usage][search]=1&transactions[2][user_key]=uk-a2&transactions[2][usage][hits]=2"},
			setup: func(e *env) {
				mustStatus(e.t, e.do(request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=9223372036854775807"}), 202)
			}},

		// Extensions.
		{name: "ext_no_body_ok", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]=1", "no_body=1")},
		{name: "ext_no_body_error", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=nope", "no_body=1&rejection_reason_header=1")},
		{name: "ext_rejection_reason_header_denied", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-susp", "rejection_reason_header=1")},
		{name: "ext_rejection_reason_header_error", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[nope]=1", "rejection_reason_header=1")},
		{name: "ext_limit_headers_ok", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[search]=1", "limit_headers=1"),
			setup: func(e *env) { authrepN(e, stA+"&user_key=uk-a1&usage[search]=1", 2) }},
		{name: "ext_limit_headers_exceeded", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[hits]=20", "limit_headers=1&rejection_reason_header=1"),
			setup: func(e *env) { authrepN(e, stA+"&user_key=uk-a1&usage[hits]=90", 1) }},
		{name: "ext_limit_headers_unlimited", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-free&usage[hits]=1", "limit_headers=1")},
		{name: "ext_hierarchy", req: withOpts("/transactions/authorize.xml?"+stA+"&user_key=uk-a1", "hierarchy=1")},
		{name: "ext_flat_usage", req: withOpts("/transactions/authrep.xml?"+stA+"&user_key=uk-a1&usage[search]=2", "flat_usage=1")},
		{name: "ext_list_app_keys", req: withOpts("/transactions/authorize.xml?"+stIDs+"&app_id=a1&app_key=k1&referrer=localhost", "list_app_keys=1")},
		{name: "ext_all", req: withOpts("/transactions/authrep.xml?"+stIDs+"&app_id=a1&app_key=k1&referrer=api.example.com&usage[search]=1", "hierarchy=1&list_app_keys=1&limit_headers=1&rejection_reason_header=1")},

		// OAuth.
		{name: "oauth_authorize", req: get("/transactions/oauth_authorize.xml?" + stO + "&app_id=o1&redirect_url=https://example.com/cb&usage[hits]=1")},
		{name: "oauth_authrep", req: get("/transactions/oauth_authrep.xml?" + stO + "&app_id=o1&usage[search]=1")},
		{name: "oauth_redirect_url_invalid", req: get("/transactions/oauth_authorize.xml?" + stO + "&app_id=o1&redirect_url=https://evil.com/cb")},
		{name: "oauth_redirect_uri_invalid", req: get("/transactions/oauth_authrep.xml?" + stO + "&app_id=o1&redirect_uri=https://evil.com/cb")},
		{name: "oauth_application_not_found", req: get("/transactions/oauth_authorize.xml?" + stO + "&app_id=nope")},

		// Batch report and liveness.
		{name: "report_accepted", req: request{method: "POST", uri: "/transactions.xml?" + stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1"}},
		{name: "report_after_then_authorize", req: get("/transactions/authorize.xml?" + stA + "&user_key=uk-a2"),
			setup: func(e *env) {
				body := "transactions[0][user_key]=uk-a2&transactions[0][usage][search]=2&transactions[1][user_key]=uk-a2&transactions[1][usage][hits]=%2310&transactions[1][timestamp]=" + strconv.FormatInt(fixedNow.Unix()-60, 10)
				mustStatus(e.t, e.do(request{method: "POST", uri: "/transactions.xml?" + stA, contentType: "application/x-www-form-urlencoded", body: body}), 202)
			}},
		{name: "status_ok", req: get("/status")},
		{name: "status_starting", req: get("/status"), notReady: true},
		{name: "check_txt", req: get("/check.txt")},
		{name: "available", req: request{method: "HEAD", uri: "/available"}},
	}
}

func manyTxns(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("&transactions[")
		b.WriteString(strconv.Itoa(i))
		b.WriteString("][user_key]=uk-a1")
	}
	return b.String()
}

// TestGolden compares every answer shape byte for byte with testdata/*.golden
// (status, content type, 3scale headers, body). Run with -update to rewrite.
func TestGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			if seen[tc.name] {
				t.Fatalf("duplicate case name %q", tc.name)
			}
			seen[tc.name] = true
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			e.ready.Store(!tc.notReady)
			got := dump(e.do(tc.req))
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("answer differs from %s\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// TestGoldenCoversEveryCode makes sure each error code and denial reason has
// at least one golden file, so that a new code cannot ship untested.
func TestGoldenCoversEveryCode(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	for c := errCode(1); c < numErrCodes; c++ {
		if c == errRequestHeaderTooLarge {
			continue // produced by fasthttp's reader; see TestServerLimits
		}
		if !bytes.Contains(all, []byte(`code="`+c.String()+`"`)) {
			t.Errorf("no golden file shows error code %s", c)
		}
	}
	for d := denial(1); d < numDenials; d++ {
		arg := []byte("evil.com")
		if d == denyRedirectURLInvalid || d == denyRedirectURIInvalid {
			arg = []byte("https://evil.com/cb")
		}
		reason := appendReason([]byte("<reason>"), d, arg)
		if !bytes.Contains(all, append(reason, "</reason>"...)) {
			t.Errorf("no golden file shows denial %s (%s)", d, reason)
		}
	}
}

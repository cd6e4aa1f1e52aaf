package smapi

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

const maxInt64 = "9223372036854775807"

// usageReport is one <usage_report> of a status answer.
type usageReport struct {
	metric, period string
	current        int64
}

var reportRE = regexp.MustCompile(`<usage_report metric="([^"]*)" period="([^"]*)"[^>]*>.*?<current_value>(-?[0-9]+)</current_value></usage_report>`)

// usageReports parses the usage reports of a status body. A value that does
// not fit in int64 fails the test: it would be a wrapped or garbled counter.
func usageReports(t testing.TB, body []byte) []usageReport {
	t.Helper()
	var out []usageReport
	for _, m := range reportRE.FindAllSubmatch(body, -1) {
		v, err := strconv.ParseInt(string(m[3]), 10, 64)
		if err != nil {
			t.Fatalf("current_value %q: %v", m[3], err)
		}
		out = append(out, usageReport{string(m[1]), string(m[2]), v})
	}
	return out
}

// counters reads every counter of the app with user key uk through
// authorize (which records nothing), keyed "metric/period", and fails the
// test on a negative value or on an authorized answer over a limit.
func (e *env) counters(t testing.TB, uk string) map[string]int64 {
	t.Helper()
	resp := e.get("/transactions/authorize.xml?"+stA+"&user_key="+uk, "")
	if resp.StatusCode() != 200 && resp.StatusCode() != 409 {
		t.Fatalf("authorize %s: %d %s", uk, resp.StatusCode(), resp.Body())
	}
	out := map[string]int64{}
	for _, r := range usageReports(t, resp.Body()) {
		if r.current < 0 {
			t.Fatalf("authorize %s answered %d with %s/%s current_value %d: %s", uk, resp.StatusCode(), r.metric, r.period, r.current, resp.Body())
		}
		out[r.metric+"/"+r.period] = r.current
	}
	return out
}

func report(e *env, query string) *fasthttp.Response {
	return e.do(request{method: "POST", uri: "/transactions.xml?" + stA + query})
}

// TestCountersNeverWrap replays a hostile-input probe's reproduction and its
// neighbours at the API: usage that would take a counter, or the sum of one
// call's usage for a metric, past 9223372036854775807 is refused with
// usage_overflow and counts nowhere (no counter, no event); in a batch the
// other transactions still count. Authorize never answers 200 with a
// negative current_value.
func TestCountersNeverWrap(t *testing.T) {
	type call struct {
		get, post   string // authrep/authorize query, or batch report query (after stA)
		status      int
		code        string // error code, "" for none
		msgContains string
	}
	cases := []struct {
		name     string
		calls    []call
		events   int              // events with usage recorded by the sink
		counters map[string]int64 // uk-a1's counters at the end
		a2       map[string]int64 // uk-a2's counters at the end (nil: not checked)
	}{
		{
			name: "a batch report of MaxInt64 sent twice",
			calls: []call{
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=" + maxInt64, status: 202},
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=" + maxInt64, status: 422, code: "usage_overflow", msgContains: `transaction "0" was not recorded`},
				{get: "authorize.xml?" + stA + "&user_key=uk-a1", status: 409},
				{get: "authorize.xml?" + stA + "&user_key=uk-a1&usage[hits]=1", status: 409},
				{get: "authrep.xml?" + stA + "&user_key=uk-a1&usage[hits]=1", status: 409},
			},
			events:   1,
			counters: map[string]int64{"hits/day": 1<<63 - 1, "hits/eternity": 1<<63 - 1, "search/sliding:1m": 0},
		},
		{
			name: "both transactions in one batch",
			calls: []call{
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=" + maxInt64 + "&transactions[1][user_key]=uk-a1&transactions[1][usage][hits]=" + maxInt64,
					status: 422, code: "usage_overflow", msgContains: `transaction "1" was not recorded`},
			},
			events:   1,
			counters: map[string]int64{"hits/day": 1<<63 - 1, "hits/eternity": 1<<63 - 1, "search/sliding:1m": 0},
		},
		{
			name: "the other transactions of the batch still count",
			calls: []call{
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][search]=" + strconv.FormatInt(1<<63-3, 10), status: 202},
				{post: "&transactions[0][user_key]=uk-a2&transactions[0][usage][hits]=1&transactions[1][user_key]=uk-a1&transactions[1][usage][upload]=3&transactions[2][user_key]=uk-a2&transactions[2][usage][search]=2&transactions[3][user_key]=uk-a1&transactions[3][usage][hits]=2",
					status: 422, code: "usage_overflow", msgContains: `transaction "1" was not recorded: its usage would take a counter past 9223372036854775807; 1 of 4 transactions were not recorded; the others were`},
			},
			events:   4,
			counters: map[string]int64{"hits/day": 1<<63 - 1, "hits/eternity": 1<<63 - 1, "search/sliding:1m": 1<<63 - 3},
			a2:       map[string]int64{"hits/day": 3, "hits/eternity": 3, "search/sliding:1m": 2},
		},
		{
			name: "authrep of children summing past MaxInt64 into their parent",
			calls: []call{
				{get: "authrep.xml?" + stA + "&user_key=uk-a1&usage[search]=" + maxInt64 + "&usage[upload]=" + maxInt64, status: 422, code: "usage_overflow", msgContains: `usage of metric "hits"`},
				{get: "authorize.xml?" + stA + "&user_key=uk-a1&usage[search]=" + maxInt64 + "&usage[upload]=1", status: 422, code: "usage_overflow"},
				{get: "authrep.xml?" + stA + "&user_key=uk-free&usage[search]=" + maxInt64 + "&usage[upload]=" + maxInt64, status: 422, code: "usage_overflow"},
				{get: "authrep.xml?" + stA + "&user_key=uk-a1&usage[upload]=3&usage[hits]=4", status: 200},
			},
			events:   1,
			counters: map[string]int64{"hits/day": 7, "hits/eternity": 7, "search/sliding:1m": 0},
		},
		{
			name: "a batch transaction whose children sum past MaxInt64 refuses the batch",
			calls: []call{
				{post: "&transactions[0][user_key]=uk-a2&transactions[0][usage][hits]=1&transactions[1][user_key]=uk-free&transactions[1][usage][search]=" + maxInt64 + "&transactions[1][usage][upload]=1",
					status: 422, code: "usage_overflow", msgContains: `usage of metric "hits"`},
			},
			events:   0,
			counters: map[string]int64{"hits/day": 0, "hits/eternity": 0, "search/sliding:1m": 0},
			a2:       map[string]int64{"hits/day": 0, "hits/eternity": 0, "search/sliding:1m": 0},
		},
		{
			name: "a set plus a child past MaxInt64",
			calls: []call{
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=%23" + maxInt64 + "&transactions[0][usage][search]=1", status: 422, code: "usage_overflow"},
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=%23" + strconv.FormatInt(1<<63-2, 10) + "&transactions[0][usage][search]=1", status: 202},
			},
			events:   1,
			counters: map[string]int64{"hits/day": 1<<63 - 1, "hits/eternity": 1<<63 - 1, "search/sliding:1m": 1},
		},
		{
			name: "a report with a timestamp past MaxInt64",
			calls: []call{
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=" + maxInt64, status: 202},
				{post: "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1&transactions[0][timestamp]=" + strconv.FormatInt(fixedNow.Unix()-30, 10), status: 422, code: "usage_overflow"},
			},
			events:   1,
			counters: map[string]int64{"hits/day": 1<<63 - 1, "hits/eternity": 1<<63 - 1, "search/sliding:1m": 0},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			for i, c := range tc.calls {
				var resp *fasthttp.Response
				if c.post != "" {
					resp = report(e, c.post)
				} else {
					resp = e.get("/transactions/"+c.get, "")
				}
				if resp.StatusCode() != c.status || errorCode(resp.Body()) != c.code {
					t.Fatalf("call %d: %d %s, want %d %q", i, resp.StatusCode(), resp.Body(), c.status, c.code)
				}
				if !bytes.Contains(resp.Body(), []byte(c.msgContains)) {
					t.Errorf("call %d: body %s lacks %q", i, resp.Body(), c.msgContains)
				}
				for _, r := range usageReports(t, resp.Body()) {
					if r.current < 0 {
						t.Fatalf("call %d: %s/%s current_value %d: %s", i, r.metric, r.period, r.current, resp.Body())
					}
				}
				e.counters(t, "uk-a1")
				e.counters(t, "uk-a2")
			}
			n := 0
			for _, ev := range e.sink.Events() {
				if len(ev.Usage) > 0 {
					n++
				}
			}
			if n != tc.events {
				t.Errorf("%d events with usage recorded, want %d: %+v", n, tc.events, e.sink.Events())
			}
			if got := e.counters(t, "uk-a1"); fmt.Sprint(got) != fmt.Sprint(tc.counters) {
				t.Errorf("uk-a1 counters %v, want %v", got, tc.counters)
			}
			if tc.a2 != nil {
				if got := e.counters(t, "uk-a2"); fmt.Sprint(got) != fmt.Sprint(tc.a2) {
					t.Errorf("uk-a2 counters %v, want %v", got, tc.a2)
				}
			}
		})
	}
}

// fuzzApps are the applications the fuzz target calls: two on the plan with
// day, eternity and sliding limits, one on a plan without limits.
var fuzzApps = []string{"uk-a1", "uk-a2", "uk-free"}

// fuzzOp encodes one call of FuzzCountersMonotonic's script: kind (0
// authrep, 1 authorize, 2 batch report, 3 batch report with flat usage),
// first application, and the raw usage fragment.
func fuzzOp(kind, app byte, fragment string) string {
	return string([]byte{kind, app}) + fragment + "\n"
}

// FuzzCountersMonotonic runs scripts of mixed authrep, authorize and batch
// report calls (with "#N" sets, timestamps and hostile values) against a
// real Server with a limiter and a catalog, on a clock that stands still so
// that no window ends. After every call it reads every counter and checks
// that none is negative, that none decreased except by an accepted set of
// its metric, that a refused call changed nothing, and that no answer shows
// a negative current_value.
//
// A script is lines of: a kind byte, an application byte and a fragment of
// usage parameters ("usage[hits]=5&usage[search]=%231"); for reports the
// fragment is split at '|' into transactions (the i-th for the application
// after the first i), and "usage[" and "timestamp=" become that
// transaction's parameters.
func FuzzCountersMonotonic(f *testing.F) {
	f.Add(fuzzOp(2, 0, "usage[hits]="+maxInt64) + fuzzOp(2, 0, "usage[hits]="+maxInt64) + fuzzOp(1, 0, ""))
	f.Add(fuzzOp(2, 0, "usage[hits]="+maxInt64+"|usage[hits]="+maxInt64) + fuzzOp(0, 0, "usage[hits]=1"))
	f.Add(fuzzOp(0, 0, "usage[search]="+maxInt64+"&usage[upload]="+maxInt64) + fuzzOp(0, 2, "usage[search]="+maxInt64+"&usage[upload]=1"))
	f.Add(fuzzOp(0, 0, "usage[search]=2&usage[hits]=1") + fuzzOp(2, 1, "usage[hits]=%2350|usage[search]=3") + fuzzOp(2, 0, "usage[hits]=%233") + fuzzOp(0, 0, "usage[hits]=1"))
	f.Add(fuzzOp(2, 0, "usage[hits]=%23"+maxInt64+"&usage[search]=1") + fuzzOp(3, 1, "usage[hits]=9&usage[search]=4|usage[upload]=2"))
	f.Add(fuzzOp(2, 0, "usage[search]=4&timestamp="+strconv.FormatInt(fixedNow.Unix()-40, 10)+"|usage[search]=1&timestamp="+strconv.FormatInt(fixedNow.Unix()-90000, 10)) + fuzzOp(0, 0, "usage[search]=1"))
	f.Add(fuzzOp(0, 1, "usage[hits]=-1&usage[hits]=99999999999999999999") + fuzzOp(2, 1, "usage[hits]=9223372036854775808|usage[hits]=") + fuzzOp(1, 1, "usage[hits]=100"))
	f.Fuzz(func(t *testing.T, script string) {
		e := newEnv(t)
		before := map[string]map[string]int64{}
		for _, uk := range fuzzApps {
			before[uk] = e.counters(t, uk)
		}
		lines := strings.Split(script, "\n")
		if len(lines) > 24 {
			lines = lines[:24]
		}
		for i, line := range lines {
			if len(line) < 2 {
				continue
			}
			kind, first, frag := line[0]%4, int(line[1]), line[2:]
			if len(frag) > 2048 {
				frag = frag[:2048]
			}
			var resp *fasthttp.Response
			// sets[uk] holds the metrics an accepted call of this line set.
			sets := map[string][]string{}
			switch kind {
			case 0, 1:
				ep := "authrep"
				if kind == 1 {
					ep = "authorize"
				}
				resp = e.get("/transactions/"+ep+".xml?"+stA+"&user_key="+fuzzApps[first%len(fuzzApps)]+"&"+frag, "")
			default:
				var q strings.Builder
				for j, txn := range strings.Split(frag, "|") {
					if j >= 8 {
						break
					}
					uk := fuzzApps[(first+j)%len(fuzzApps)]
					pre := "transactions[" + strconv.Itoa(j) + "]"
					q.WriteString("&" + pre + "[user_key]=" + uk)
					for _, kv := range strings.Split(txn, "&") {
						if strings.HasPrefix(kv, "usage[") {
							q.WriteString("&" + pre + "[usage][" + kv[len("usage["):])
							if k, v, ok := strings.Cut(kv[len("usage["):], "]="); ok && (strings.HasPrefix(v, "#") || strings.HasPrefix(v, "%23")) {
								sets[uk] = append(sets[uk], k)
							}
						} else if strings.HasPrefix(kv, "timestamp=") {
							q.WriteString("&" + pre + "[" + kv + "]")
						}
					}
				}
				r := request{method: "POST", uri: "/transactions.xml?" + stA + q.String()}
				if kind == 3 {
					r.headers = [][2]string{{"3scale-options", "flat_usage=1"}}
				}
				resp = e.do(r)
			}
			status := resp.StatusCode()
			if status >= 500 {
				t.Fatalf("line %d %q: %d %s", i, line, status, resp.Body())
			}
			for _, r := range usageReports(t, resp.Body()) {
				if r.current < 0 {
					t.Fatalf("line %d %q: answered %d with %s/%s current_value %d", i, line, status, r.metric, r.period, r.current)
				}
			}
			// A batch with transactions refused for a counter's sake has
			// recorded its other transactions, and sets among them.
			partial := status == 422 && kind >= 2 && bytes.Contains(resp.Body(), []byte("was not recorded"))
			changed := (status == 200 && kind == 0) || status == 202 || partial // authorize never changes a counter
			for _, uk := range fuzzApps {
				after := e.counters(t, uk)
				for k, old := range before[uk] {
					now := after[k]
					set := false
					for _, m := range sets[uk] {
						set = set || strings.HasPrefix(k, m+"/")
					}
					switch {
					case !changed && now != old:
						t.Fatalf("line %d %q: refused (%d %s) but %s %s moved %d -> %d", i, line, status, errorCode(resp.Body()), uk, k, old, now)
					case now < old && !set:
						t.Fatalf("line %d %q: %s %s decreased %d -> %d without a set", i, line, uk, k, old, now)
					}
				}
				before[uk] = after
			}
		}
	})
}

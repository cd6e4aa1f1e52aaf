package smapi

import (
	"bytes"
	"mime/multipart"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

func fuzzSnapshot(f *testing.F) *catalog.Snapshot {
	snap, err := catalog.Build(testDocument(), nil)
	if err != nil {
		f.Fatal(err)
	}
	return snap
}

// FuzzParseQuery feeds arbitrary query strings and 3scale-options headers
// to the authorize/authrep parser and then through usage and credential
// resolution. Nothing may panic; what parses must be within the limits.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"",
		stA + "&user_key=uk-a1&usage[hits]=1",
		"provider_key=pk-a&app_id=a1&app_key=k1&usage%5Bsearch%5D=%2312&referrer=*&log[code]=200",
		"usage[hits]=&usage[hits]=2&usage[a][b]=1&usage=3",
		"a=%zz&b=%&c=%4&d=+%2B&&&=&==",
		"user_id=x&redirect_url=https%3A%2F%2Fexample.com%2Fcb&redirect_uri=",
		"usage[hits]=99999999999999999999&usage[search]=-1",
		"user_key=%FF%FE",
	} {
		f.Add([]byte(s), []byte("limit_headers=1&no_body=0&hierarchy=true"))
	}
	snap := fuzzSnapshot(f)
	f.Fuzz(func(t *testing.T, raw, opts []byte) {
		st := newReqState()
		st.opts = parseOptions(opts, &st.arena)
		p := &st.p
		e := parseAuthQuery(raw, &st.arena, p)
		if len(p.usage) > limiter.MaxUsage {
			t.Fatalf("%d usage entries accepted", len(p.usage))
		}
		if e.code != errNone {
			if e.code.Status() < 400 || e.code.Status() > 499 {
				t.Fatalf("parse error %s has status %d", e.code, e.code.Status())
			}
			appendError(nil, e.code, e.arg, e.arg2)
			return
		}
		for _, u := range p.usage {
			if !utf8.Valid(u.metric) || !utf8.Valid(u.value) {
				t.Fatal("invalid UTF-8 accepted")
			}
		}
		svc, e := resolveService(snap, p.providerKey, p.serviceToken, p.serviceID)
		if e.code != errNone {
			appendError(nil, e.code, e.arg, e.arg2)
			return
		}
		usage, e := resolveUsage(svc, p.usage, st.usage[:0], st.opts.flatUsage)
		if e.code == errNone {
			if len(usage) > limiter.MaxUsage {
				t.Fatalf("%d usage entries resolved", len(usage))
			}
			for _, u := range usage {
				if u.Value < 0 || int(u.Metric) >= len(svc.Metrics) {
					t.Fatalf("bad resolved usage %+v", u)
				}
				// A set reaches every ancestor as a set (unless flat).
				if a := parentOf(svc, u.Metric); u.Set && !st.opts.flatUsage && a != limiter.NoParent {
					found := false
					for _, v := range usage {
						found = found || (v.Metric == a && v.Set)
					}
					if !found {
						t.Fatalf("set %+v did not reach its parent: %+v", u, usage)
					}
				}
			}
		}
		if app, e := resolveApp(svc, p.appID, p.userKey, false); e.code == errNone {
			check(svc, app, p, false)
			check(svc, app, p, true)
		}
	})
}

// FuzzParseBatch feeds arbitrary content types, queries and bodies to the
// batch report parser (query-only, urlencoded and multipart) and validates
// what parses against the test catalog. Nothing may panic.
func FuzzParseBatch(f *testing.F) {
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	w.SetBoundary("BOUNDARY")
	w.WriteField("transactions[0][user_key]", "uk-a1")
	w.WriteField("transactions[0][usage][hits]", "#3")
	w.WriteField("transactions[0][timestamp]", "2026-05-15 10:00:00 +0000")
	w.Close()
	seeds := []struct{ ct, q, body string }{
		{"", stA + "&transactions[0][user_key]=uk-a1&transactions[0][usage][hits]=1", ""},
		{"application/x-www-form-urlencoded", "", stA + "&transactions[0][user_key]=uk-a1&transactions[1][user_key]=uk-a2&transactions[1][usage][search]=%2310"},
		{"application/x-www-form-urlencoded; charset=utf-8", stA, "transactions[0]=&transactions[][app_id]=x&transactions=y"},
		{w.FormDataContentType(), stA, mp.String()},
		{"multipart/form-data; boundary=x", "", "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n"},
		{"multipart/form-data", "", "garbage"},
		{"text/plain", "", "hello"},
		{"", stA + "&transactions[0][user_key]=uk-a1&transactions[0][timestamp]=1779000000&transactions[0][log][code]=500&transactions[0][user_id]=u", ""},
	}
	for _, s := range seeds {
		f.Add([]byte(s.ct), []byte(s.q), []byte(s.body))
	}
	snap := fuzzSnapshot(f)
	nowMS := fixedNow.UnixMilli()
	f.Fuzz(func(t *testing.T, ct, q, body []byte) {
		var b batch
		var arena []byte
		e := parseBatch(&b, &arena, ct, q, body)
		if len(b.txns) > MaxTransactions {
			t.Fatalf("%d transactions accepted", len(b.txns))
		}
		for i := range b.txns {
			if len(b.txns[i].usage) > limiter.MaxUsage {
				t.Fatalf("%d usage entries accepted", len(b.txns[i].usage))
			}
		}
		if e.code != errNone {
			appendError(nil, e.code, e.arg, e.arg2)
			return
		}
		svc, e := b.validate(snap, nowMS, false)
		if e.code != errNone {
			appendError(nil, e.code, e.arg, e.arg2)
			return
		}
		for i := range b.txns {
			tx := &b.txns[i]
			if tx.err.code != errNone {
				// Dropped alone and filed in the error log.
				var l errorLog
				l.add(svc, 0, tx.label, tx.err)
				continue
			}
			if tx.app == nil || tx.app.Service != svc {
				t.Fatal("validated transaction without its service's app")
			}
			if tx.ts < nowMS-MaxReportAge.Milliseconds() || tx.ts > nowMS+MaxReportFuture.Milliseconds() {
				t.Fatalf("timestamp %d outside the window", tx.ts)
			}
		}
	})
}

// FuzzParseTimestamp: any bytes parse without panicking to a time within
// the clamp, or are unreadable; a unix timestamp in range reads back as
// itself.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"1778839200", "2026-05-15 08:00:00 -02:00", "2012/10/01", "2026-05-15T10:00:00.123456789123Z", "-", "2026-02-30"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		ms, ok := parseTimestamp(v)
		if !ok {
			return
		}
		// Dates have four-digit years and zones within a day.
		if lim := int64(maxUnixSeconds) * 1000; ms < -lim || ms > lim {
			t.Fatalf("parseTimestamp(%q) = %d, outside ±%d", v, ms, lim)
		}
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n >= 0 && n <= maxUnixSeconds && ms != n*1000 {
			t.Fatalf("parseTimestamp(%q) = %d", v, ms)
		}
	})
}

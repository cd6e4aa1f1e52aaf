package billing

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

// tricky are identifiers that stress the encoders: separators, quotes,
// line breaks, control characters, non-ASCII, invalid UTF-8 and SQL.
var tricky = []string{
	"", "plain", "with,comma", `with"quote`, "with\nnewline", "with\r\nCRLF", "lone\rCR",
	" leading space", "trailing space ", "tab\there", "\x00nul\x01", "ünïcødé ☃", "emoji 🚀",
	"line\u2028sep\u2029", "bad\xffutf8\xc3", `back\slash`, "x' OR 1=1 --", "a\"\"b", "=SUM(A1)",
}

// encodeAll runs the encoder over rows as Export does.
func encodeAll(f Format, rows []Row) []byte {
	e := encoder{format: f, month: "2026-11"}
	buf := e.begin(nil)
	for i := range rows {
		buf = e.row(buf, &rows[i], i == 0)
	}
	return e.end(buf, len(rows) == 0)
}

func trickyRows() []Row {
	var rows []Row
	for i, s := range tricky {
		rows = append(rows, Row{Month: "2026-11", TenantID: "t" + s, ServiceID: s, AppID: s + "a", PlanID: "p", Metric: s, Value: int64(i*1000 - 3)})
	}
	return rows
}

// wantJSON is what a JSON decoder should read back for s: invalid UTF-8
// bytes each become U+FFFD.
func wantJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging over a string yields U+FFFD per invalid byte
	}
	return b.String()
}

func fixJSON(r Row) Row {
	r.TenantID, r.ServiceID, r.AppID, r.PlanID, r.Metric = wantJSON(r.TenantID), wantJSON(r.ServiceID), wantJSON(r.AppID), wantJSON(r.PlanID), wantJSON(r.Metric)
	return r
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, len(tricky)} {
		rows := trickyRows()[:n]
		t.Run("csv", func(t *testing.T) {
			got := decodeCSV(t, encodeAll(CSV, rows))
			if len(got) != len(rows) {
				t.Fatalf("read %d rows, want %d", len(got), len(rows))
			}
			for i := range rows {
				want := rows[i]
				// encoding/csv turns CRLF inside a quoted field into LF.
				for _, p := range []*string{&want.TenantID, &want.ServiceID, &want.AppID, &want.PlanID, &want.Metric} {
					*p = strings.ReplaceAll(*p, "\r\n", "\n")
				}
				if got[i] != want {
					t.Errorf("row %d = %+v, want %+v", i, got[i], want)
				}
			}
		})
		for _, f := range []Format{JSON, NDJSON} {
			t.Run(string(f), func(t *testing.T) {
				got := decodeJSON(t, f, encodeAll(f, rows))
				if len(got) != len(rows) {
					t.Fatalf("read %d rows, want %d", len(got), len(rows))
				}
				for i := range rows {
					if want := fixJSON(rows[i]); got[i] != want {
						t.Errorf("row %d = %+v, want %+v", i, got[i], want)
					}
				}
			})
		}
	}
}

func TestEncodeEmpty(t *testing.T) {
	for f, want := range map[Format]string{
		CSV:    "month,tenant_id,service_id,app_id,plan_id,metric,value\r\n",
		JSON:   "[]\n",
		NDJSON: "",
	} {
		if got := string(encodeAll(f, nil)); got != want {
			t.Errorf("%s empty = %q, want %q", f, got, want)
		}
	}
}

// decodeCSV parses an export with encoding/csv, checking the header and
// RFC 4180 line ends.
func decodeCSV(t testing.TB, b []byte) []Row {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		t.Fatalf("CSV does not end with CRLF: %q", b)
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = len(Columns)
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v\n%q", err, b)
	}
	if strings.Join(recs[0], ",") != strings.Join(Columns, ",") {
		t.Fatalf("header %q", recs[0])
	}
	var rows []Row
	for _, rec := range recs[1:] {
		var v int64
		if err := json.Unmarshal([]byte(rec[6]), &v); err != nil {
			t.Fatalf("value %q: %v", rec[6], err)
		}
		rows = append(rows, Row{rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], v})
	}
	return rows
}

// decodeJSON parses a JSON or NDJSON export with encoding/json, strictly.
func decodeJSON(t testing.TB, f Format, b []byte) []Row {
	t.Helper()
	var rows []Row
	if f == JSON {
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&rows); err != nil {
			t.Fatalf("JSON does not parse: %v\n%q", err, b)
		}
		if d.More() {
			t.Fatalf("JSON has trailing data: %q", b)
		}
		if rows == nil {
			rows = []Row{}
		}
		return rows
	}
	if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("NDJSON does not end with a newline: %q", b)
	}
	for line := range bytes.Lines(b) {
		var r Row
		d := json.NewDecoder(bytes.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(&r); err != nil {
			t.Fatalf("NDJSON line %q: %v", line, err)
		}
		rows = append(rows, r)
	}
	return rows
}

func FuzzEncode(f *testing.F) {
	for _, s := range tricky {
		f.Add(s, s+"x", int64(len(s)))
	}
	f.Fuzz(func(t *testing.T, a, b string, v int64) {
		rows := []Row{{Month: "2026-11", TenantID: a, ServiceID: b, AppID: a + b, PlanID: b, Metric: a, Value: v}, {Month: "2026-11", TenantID: b, ServiceID: a, Value: -v}}
		got := decodeCSV(t, encodeAll(CSV, rows))
		for i := range rows {
			want := rows[i]
			for _, p := range []*string{&want.TenantID, &want.ServiceID, &want.AppID, &want.PlanID, &want.Metric} {
				*p = strings.ReplaceAll(*p, "\r\n", "\n")
			}
			if got[i] != want {
				t.Fatalf("CSV row %d = %+v, want %+v", i, got[i], want)
			}
		}
		for _, f := range []Format{JSON, NDJSON} {
			got := decodeJSON(t, f, encodeAll(f, rows))
			for i := range rows {
				if want := fixJSON(rows[i]); got[i] != want {
					t.Fatalf("%s row %d = %+v, want %+v", f, i, got[i], want)
				}
			}
		}
	})
}

func BenchmarkEncodeRow(b *testing.B) {
	r := Row{TenantID: "acme", ServiceID: "2555417777820", AppID: "app-000123", PlanID: "basic", Metric: "hits", Value: 123456}
	for _, f := range []Format{CSV, JSON, NDJSON} {
		b.Run(string(f), func(b *testing.B) {
			e := encoder{format: f, month: "2026-11"}
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				buf = e.row(buf[:0], &r, i == 0)
			}
		})
	}
}

package billing

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
		ok   bool
	}{
		{"csv", CSV, true},
		{"json", JSON, true},
		{"ndjson", NDJSON, true},
		{"", "", false},
		{"CSV", "", false},
		{"csv ", "", false},
		{"xml", "", false},
		{"json'; DROP TABLE x --", "", false},
	} {
		got, err := ParseFormat(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidFormat) {
			t.Errorf("ParseFormat(%q) error %v does not wrap ErrInvalidFormat", tc.in, err)
		}
	}
}

func TestContentType(t *testing.T) {
	for f, want := range map[Format]string{
		CSV:    "text/csv; charset=utf-8",
		JSON:   "application/json",
		NDJSON: "application/x-ndjson",
		"xml":  "application/octet-stream",
	} {
		if got := ContentType(f); got != want {
			t.Errorf("ContentType(%q) = %q, want %q", f, got, want)
		}
	}
}

func TestParseMonth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // RFC 3339, "" = error
	}{
		{"2026-11", "2026-11-01T00:00:00Z"},
		{"2026-01", "2026-01-01T00:00:00Z"},
		{"2000-12", "2000-12-01T00:00:00Z"},
		{"2099-02", "2099-02-01T00:00:00Z"},
		{"2026-00", ""},
		{"2026-13", ""},
		{"2026-1", ""},
		{"26-11", ""},
		{"1999-12", ""},
		{"2026/11", ""},
		{"2026-11-01", ""},
		{" 2026-11", ""},
		{"2026-11 ", ""},
		{"+026-11", ""},
		{"2026-+1", ""},
		{"２０２６-11", ""},
		{"2026-11' OR 1=1", ""},
		{"", ""},
	} {
		got, err := ParseMonth(tc.in)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrInvalidMonth) {
				t.Errorf("ParseMonth(%q) = %v, %v; want ErrInvalidMonth", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.Format(time.RFC3339) != tc.want || got.Location() != time.UTC {
			t.Errorf("ParseMonth(%q) = %v, %v; want %s UTC", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseMonth(f *testing.F) {
	for _, s := range []string{"2026-11", "2026-13", "abcd-ef", "2026-1", "9999-12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMonth(s)
		if err != nil {
			return
		}
		// Strict: only the canonical spelling parses, and it names a month start.
		if back := m.Format("2006-01"); back != s {
			t.Fatalf("ParseMonth(%q) = %v, which formats back as %q", s, m, back)
		}
		if m.Day() != 1 || m.Hour() != 0 || m.Location() != time.UTC {
			t.Fatalf("ParseMonth(%q) = %v, not a UTC month start", s, m)
		}
	})
}

func TestCheckMonth(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		month  string
		future bool
	}{
		{"2026-10", false},
		{"2026-11", false}, // the current month: allowed, not final
		{"2026-12", true},
		{"2027-01", true},
		{"2001-01", false},
	} {
		m, _ := ParseMonth(tc.month)
		err := CheckMonth(m, now)
		if tc.future != (err != nil) || (err != nil && !errors.Is(err, ErrFutureMonth)) {
			t.Errorf("CheckMonth(%s) = %v, want future=%v", tc.month, err, tc.future)
		}
	}
	// Late on the last day of a month in a zone east of UTC, it is already
	// the next month locally, but billing months are UTC months.
	east := time.FixedZone("UTC+10", 10*3600)
	local := time.Date(2026, 12, 1, 5, 0, 0, 0, east) // 2026-11-30T19:00Z
	dec, _ := ParseMonth("2026-12")
	if err := CheckMonth(dec, local); err == nil {
		t.Errorf("CheckMonth(2026-12) at %v (still November in UTC) = nil, want ErrFutureMonth", local)
	}
}

func TestValidate(t *testing.T) {
	nov, _ := ParseMonth("2026-11")
	good := Request{TenantID: "acme", Month: nov, Format: CSV}
	for _, tc := range []struct {
		name string
		db   string
		edit func(*Request)
		want error
	}{
		{"ok", "sluice", func(*Request) {}, nil},
		{"all tenants", "sluice", func(r *Request) { r.TenantID, r.AllTenants = "", true }, nil},
		{"no tenant", "sluice", func(r *Request) { r.TenantID = "" }, ErrInvalidRequest},
		{"all tenants with a tenant", "sluice", func(r *Request) { r.AllTenants = true }, ErrInvalidRequest},
		{"all tenants with a service", "sluice", func(r *Request) { r.TenantID, r.AllTenants, r.ServiceID = "", true, "s" }, ErrInvalidRequest},
		{"bad format", "sluice", func(r *Request) { r.Format = "xml" }, ErrInvalidFormat},
		{"empty format", "sluice", func(r *Request) { r.Format = "" }, ErrInvalidFormat},
		{"zero month", "sluice", func(r *Request) { r.Month = time.Time{} }, ErrInvalidRequest},
		{"mid-month", "sluice", func(r *Request) { r.Month = nov.Add(time.Hour) }, ErrInvalidRequest},
		{"local month start", "sluice", func(r *Request) { r.Month = time.Date(2026, 11, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)) }, ErrInvalidRequest},
		{"bad database", "sluice; DROP", func(*Request) {}, ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			err := validate(tc.db, r)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("validate = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestQueryParameterized checks that no request value ever reaches the SQL
// text: they are all bound arguments.
func TestQueryParameterized(t *testing.T) {
	nov, _ := ParseMonth("2026-11")
	evil := "x' OR 1=1 --"
	for _, r := range []Request{
		{TenantID: evil, ServiceID: evil, Month: nov, Format: CSV},
		{TenantID: evil, Month: nov, Format: CSV},
		{AllTenants: true, Month: nov, Format: CSV},
	} {
		sql, args := query("sluice", r)
		for _, bad := range []string{evil, "1793"} {
			if strings.Contains(sql, bad) {
				t.Errorf("SQL contains a request value %q: %s", bad, sql)
			}
		}
		want := 2
		if !r.AllTenants {
			want++
		}
		if r.ServiceID != "" {
			want++
		}
		if len(args) != want || strings.Count(sql, "?") != want {
			t.Errorf("%d args, %d placeholders, want %d: %s", len(args), strings.Count(sql, "?"), want, sql)
		}
	}
}

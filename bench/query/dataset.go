package main

import (
	"fmt"
	"time"
)

// Dataset describes the benchmark data: one tenant, one service, Apps
// applications, metrics hits/search/upload (search and upload are children of
// hits) at minute resolution for Days days from the first of Month.
//
// Every value is a pure function of (minute index, app) built from ClickHouse's
// intHash64, so the server generates the rows with INSERT ... SELECT and this
// program recomputes any total independently in Go (Expected) to check them.
type Dataset struct {
	Month time.Time // first instant of a UTC month
	Days  int
	Apps  int
}

// Identifiers of the data set, also written into the serve config.
const (
	Tenant     = "bench"
	Service    = "svc-bench"
	AdminToken = "bench-admin-token"
	QueryToken = "bench-query-token"
	// markerPartitions is how many Kafka partitions the fake offset markers
	// name (one marker per partition, table and day).
	markerPartitions = 4
)

// Metrics are the usage metrics; Parent is the hierarchy the rollup applied
// (a child's usage is also in its parent's rows).
var (
	Metrics = []string{"hits", "search", "upload"}
	Parent  = map[string]string{"search": "hits", "upload": "hits"}
	Plans   = []string{"basic", "pro", "enterprise"}
	Regions = []string{"eu-west", "us-east", "ap-south"}
	Reasons = []string{"limits_exceeded", "application_key_invalid", "referrer_not_allowed", "application_not_active"}
)

// denialOneIn: about one app-minute in denialOneIn has a denial row.
const denialOneIn = 64

// Minutes is the number of minutes of the data set.
func (d Dataset) Minutes() int { return d.Days * 1440 }

// End is the exclusive end of the data set.
func (d Dataset) End() time.Time { return d.Month.AddDate(0, 0, d.Days) }

// UsageRows is the number of usage rows of usage_minute (one per app, metric
// and minute).
func (d Dataset) UsageRows() int64 { return int64(d.Minutes()) * int64(d.Apps) * int64(len(Metrics)) }

// Check refuses data sets the generator cannot describe.
func (d Dataset) Check() error {
	if d.Month.Day() != 1 || d.Month.Hour() != 0 || d.Month.Minute() != 0 || d.Month.Location() != time.UTC {
		return fmt.Errorf("month %v is not the first instant of a UTC month", d.Month)
	}
	if d.Days < 1 || d.Month.AddDate(0, 0, d.Days-1).Month() != d.Month.Month() {
		return fmt.Errorf("days %d: must be 1..days of %s", d.Days, d.Month.Format("2006-01"))
	}
	if d.Apps < 1 || d.Apps > 100000 {
		return fmt.Errorf("apps %d: must be 1..100000", d.Apps)
	}
	return nil
}

// AppID is the id of application a (0-based).
func AppID(a int) string { return fmt.Sprintf("app-%d", a) }

// intHash64 is ClickHouse's SQL function intHash64: the MurmurHash3 64-bit
// finalizer of x xor a fixed salt (IntHash64Impl in FunctionsHashing.h).
func intHash64(x uint64) uint64 {
	x ^= 0x4CF2D2BAAE6DA887
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// rate is application a's usage scale, 1..50, skewed (cubic) so that a few
// applications dominate the top-N as in real traffic.
func rate(a uint64) uint64 {
	r := intHash64(a*2+1) % 1000
	return 1 + r*r*r/20000000
}

// plan of application a (its region, Regions[a % len], is computed in SQL).
func plan(a uint64) string { return Plans[intHash64(a*2+2)%uint64(len(Plans))] }

// Values of one (minute, app): g = global minute index * 1000... see gIndex.
type minuteValues struct {
	hits, search, upload int64
	denied               int64 // 0: no denial row
	reason               string
}

// gIndex is the global row index of (minute index m, app a): the generator's
// system.numbers value.
func gIndex(m, a, apps uint64) uint64 { return m*apps + a }

// values computes the rows of one (minute, app), exactly as genSQL does.
func values(g, a uint64) minuteValues {
	r := rate(a)
	search := 1 + intHash64(g*8+1)%r
	upload := 1 + intHash64(g*8+2)%(r/4+1)
	direct := 1 + intHash64(g*8+3)%r
	v := minuteValues{hits: int64(direct + search + upload), search: int64(search), upload: int64(upload)}
	if intHash64(g*8+4)%denialOneIn == 0 {
		v.denied = int64(1 + intHash64(g*8+5)%3)
		v.reason = Reasons[intHash64(g*8+6)%uint64(len(Reasons))]
	}
	return v
}

// Totals are the data set's sums over its whole range.
type Totals struct {
	// Usage[app][metric index] is the app's total per metric.
	Usage [][3]int64
	// Denials per reason over all apps.
	Denials map[string]int64
	// UsageSum and DenialSum are the grand totals.
	UsageSum, DenialSum int64
	DenialRows          int64
}

// Expected computes the totals in Go, independently of ClickHouse.
func (d Dataset) Expected() Totals {
	t := Totals{Usage: make([][3]int64, d.Apps), Denials: map[string]int64{}}
	apps := uint64(d.Apps)
	for m := uint64(0); m < uint64(d.Minutes()); m++ {
		for a := uint64(0); a < apps; a++ {
			v := values(gIndex(m, a, apps), a)
			u := &t.Usage[a]
			u[0] += v.hits
			u[1] += v.search
			u[2] += v.upload
			if v.denied != 0 {
				t.Denials[v.reason] += v.denied
				t.DenialSum += v.denied
				t.DenialRows++
			}
		}
	}
	for _, u := range t.Usage {
		t.UsageSum += u[0] + u[1] + u[2]
	}
	return t
}

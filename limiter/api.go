package limiter

import (
	"errors"
	"time"
)

// MetricID identifies a metric within its service; counters are keyed by it.
// The catalog gives each metric name of a service its own id for the life of
// the process and never gives it to another metric of that service, so
// adding, deleting or reordering metrics never moves usage from one metric to
// another. Ids start at 0 and stay below NoParent; the ids of a service's
// current metrics may have holes.
type MetricID uint16

// NoParent marks a root metric in a parent table.
const NoParent MetricID = 0xFFFF

// MaxUsage bounds the usage entries of one request; callers reject more.
const MaxUsage = 64

// AppKey identifies an application to the limiter. The catalog assigns each
// (tenant, service, application) a key that stays the same for the life of the
// process; the limiter shards by a mix of its bits.
type AppKey uint64

// Unit is the kind of a limit's period.
type Unit uint8

// Period units. Calendar units are aligned in UTC; weeks start on Monday.
const (
	Minute Unit = iota + 1
	Hour
	Day
	Week
	Month
	Year
	Eternity
	Sliding
	// Second is a calendar second (aligned on the unix second). Plans do not
	// have it (ParsePeriod refuses "second", as 3scale has no such period);
	// it exists for protocols whose limits do, such as Envoy's rate limit
	// service (ingest/envoyrls).
	Second
)

// Period is a limit's window: a calendar unit (Second included), or Sliding
// with a Window between 1s and 24h.
type Period struct {
	Unit   Unit
	Window time.Duration // Sliding only
}

// Limit is one usage limit of a plan: at most Max units of Metric per Period.
type Limit struct {
	Metric MetricID
	Period Period
	Max    int64
}

// Usage is one metric's usage in a call. Set means "#N": the counters are set
// to Value instead of incremented (report only). Value is never negative: a
// call with a negative value is refused with ErrNegative.
type Usage struct {
	Metric MetricID
	Value  int64
	Set    bool
}

// Mode says what a request does with the counters.
type Mode uint8

const (
	// ModeAuthorize checks current+usage <= max for every limit touched and
	// records nothing.
	ModeAuthorize Mode = iota
	// ModeAuthRep checks like ModeAuthorize and, only if every check passes,
	// increments every counter touched, atomically.
	ModeAuthRep
	// ModeReport increments (or sets) without checking limits. It is refused
	// (Decision.Err) only when a counter would pass MaxInt64.
	ModeReport
)

// Request is one call to the limiter. The caller owns every slice; the
// limiter neither keeps nor modifies them.
type Request struct {
	App     AppKey
	Limits  []Limit    // the application's plan
	Parents []MetricID // the service's hierarchy, by id: Parents[m] is m's parent or NoParent
	Usage   []Usage    // at most MaxUsage entries
	Flat    bool       // usage already includes children in parents: don't propagate
	Mode    Mode
}

// Report describes one limit of the plan after the call, for the response.
type Report struct {
	Limit    Limit
	Start    int64 // unix seconds; calendar: window start; sliding: now-window; eternity: 0
	End      int64 // unix seconds; calendar: window end; sliding: now; eternity: 0
	Current  int64 // ModeAuthRep: after this call's usage if admitted; otherwise before it
	Exceeded bool  // Current > Max
	// Before is the counter's value before this call: Current minus what
	// the call added (Current itself when it changed nothing). Watchers of
	// crossings (ingest/alerts) compare the two.
	Before int64
}

// Change is one counter that Record moved: the index of its limit in the
// plan, the start of its window (unix seconds; 0 for eternity) and its value
// before and after. Record reports changes of calendar and eternity counters
// only: a sliding window has no window of its own to report them in.
type Change struct {
	Limit         int
	Start         int64
	Before, After int64
}

// Decision is the outcome of a request. Callers reuse one Decision per
// goroutine; Do overwrites it and appends into Reports[:0].
type Decision struct {
	Allowed bool
	Reports []Report // one per Request.Limits entry, same order
	// The most constrained limit among those the usage touches (all limits when
	// the request has no usage): fewest further identical calls that would
	// pass; on a tie the longer period. Constrained is -1 when no limit applies.
	Constrained int
	Remaining   int64 // identical calls that would still pass; -1 unlimited
	Reset       int64 // seconds until the constrained window resets; -1 never
	// Err is nil, or ErrNegative or ErrOverflow when the request was refused
	// as a whole whatever its mode: Allowed is false and no counter changed.
	Err error

	scratch []limitState // per-limit working state of Do, reused across calls
	plan    compiled     // the last plan Do compiled with this Decision
}

// Errors of requests refused whatever their mode (Decision.Err, Record,
// Seed). Nothing is counted for a refused request.
var (
	// ErrNegative: a usage value or a seeded sum below zero. Counters count
	// usage, which is never negative.
	ErrNegative = errors.New("limiter: negative usage value")
	// ErrOverflow: a counter, or the usage of one call summed for a metric
	// and its descendants, would pass 9223372036854775807 (the largest
	// int64). Counters never wrap.
	ErrOverflow = errors.New("limiter: usage would take a counter past 9223372036854775807")
)

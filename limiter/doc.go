// Package limiter owns Sluice's usage counters: per application, metric and
// period, in memory, with an atomic check-and-increment that never lets two
// concurrent calls both take the last unit of a limit.
//
// # Model
//
// A plan is a list of Limits (metric, period, max). A Request names the
// application (AppKey), its plan, the service's metric hierarchy (Parents),
// the call's Usage and a Mode:
//
//   - ModeAuthorize checks and records nothing;
//   - ModeAuthRep checks and, only if every check passes, increments every
//     counter the usage touches, all or none;
//   - ModeReport increments without checking limits and is allowed unless
//     a counter would wrap (below).
//
// Usage of a metric also counts toward all its ancestors unless the request
// is Flat (the caller already added children into parents). Several entries
// for one metric add up. A Set entry ("#N") sets the named metric's
// counters to N, then the call's other entries add on top; it does not
// propagate to ancestors (3scale's set on a child also sets its ancestors:
// the caller names each, so that the events record every set). It does so
// in every mode: ModeAuthorize and ModeAuthRep check N plus the other
// entries against max (a touched limit with max 0 still refuses), whatever
// the counter holds, and ModeAuthRep then sets it.
//
// With usage, only the limits whose metric the usage touches (after
// propagation) are checked, each passing when current+delta <= max; a touched
// limit with max 0 always fails, as 3scale treats max 0 as "metric disabled".
// Without usage, every limit is checked with delta 0: current <= max.
//
// # Counters never wrap, never go negative
//
// Every counter's value, as Do reports and checks it, stays within
// [0, MaxInt64]. A usage value below zero is refused (ErrNegative), and so is
// usage that would take a counter past MaxInt64, or whose entries summed for
// one metric (a parent with its children) would: ModeReport, Record and
// Seed refuse the whole call with ErrOverflow and change no counter, and
// ModeAuthRep never gets there, since current+delta <= max is checked first.
// The checks are a compare per counter; nothing is ever wrapped or clamped on
// the way in. A sliding window's sum saturates at MaxInt64 if the clock goes
// back far enough for a window to span more usage than any earlier window
// did. Metrics without a limit have no counter here: keeping their totals
// from wrapping is the rollups' and the readers' job (see ingest/rollup).
//
// Counters are identified by (app, metric, period), not by the limit's
// position in the plan, so a plan change keeps the usage of the counters the
// new plan shares with the old one; a plan listing the same counter twice
// counts usage once. Counters are created on first use: a limit without a
// counter reports 0.
//
// Do reports, for every limit of the plan in order, the window's bounds and
// the counter's value: after the call's usage when ModeAuthRep admitted it or
// in ModeReport, before it otherwise. It also picks the most constrained
// limit among those touched (all when there is no usage): the one allowing
// the fewest further identical calls, floor((max-current)/delta); on a tie
// the longer period. Decision.Reset is the seconds until its window resets.
// Each report also carries the counter's value before the call (Before), and
// RecordChanges is Record reporting the calendar and eternity counters it
// moved, before and after: what utilization alerts compare with their
// thresholds (ingest/alerts), at no cost to a call that does not ask.
//
// # Periods
//
// Calendar periods (minute, hour, day, week starting on Monday, month, year)
// are aligned in UTC; eternity never resets. Window bounds are integer
// arithmetic on unix seconds; month and year bounds are cached per UTC day
// in a lock-free seqlock, the others are a remainder away.
//
// A sliding window of length W (1s to 24h, "sliding:1m") is cut into K = 7
// (SubBuckets) sub-buckets of g = ceil(W/K), kept in a ring of K+1. A call at
// time t counts every sub-bucket that overlaps [t-W, t]. The guarantee:
//
//	The usage admitted within ANY interval of length W never exceeds max.
//
// (Whatever usage lies in [t-W, t] sits in counted sub-buckets, so an
// admission at t leaves at most max there; and the worst interval ends at an
// admission.) The price is under-admission: usage up to W+g old may still be
// counted, so the limiter behaves at worst like a window of W + W/7 (for
// sliding:1m, 68.6s): a client that spent max at t is refused until some
// time after t+W and by t+W+W/7, never at t+W or before. Reset for a sliding window is
// when its oldest non-empty sub-bucket leaves the window.
//
// # Memory
//
// Each shard keeps its applications in an open-addressing hash table (linear
// probing, grown by half at 4/5 full, shrunk when the sweeper empties it
// below a quarter) whose slots are the 128-byte application records
// themselves: key, bookkeeping and 14 words of counters inline, enough for
// a minute, a month and a sliding counter (2+2+10 words) or seven calendar
// counters. Larger plans spill into a per-shard overflow map. The records hold
// no pointers, so the garbage collector never scans them, and finding an
// application and all its counters costs one trip to memory (Do asks for
// both cache lines of the record at once and does the work that does not
// need it while they arrive): 1,000,000 active applications with three
// limits take about 180 bytes each. Options.HugePages puts big tables on
// transparent huge pages, sparing most calls a TLB miss as well.
//
// Counters of closed windows are reset when next touched, or removed when an
// application needs room for a new counter. A sweeper drops applications
// whose counters are all dead (zero, closed calendar window, empty sliding
// window; an eternity counter with a value is never dead): every call
// examines a few slots of its shard, so there is no global pass and no
// stop-the-world, and Sweep walks every shard for a background ticker.
// Memory follows the applications active in their longest open window.
//
// # Concurrency
//
// Applications are spread over a power-of-two number of shards (default the
// larger of 256 and 4×GOMAXPROCS) by a hash of their key. Each shard has
// one mutex, held for the whole of one call: finding the record, checking
// every limit and incrementing every counter. That makes check-and-increment
// atomic across all the counters a call touches (per-counter atomics could
// not do all-or-nothing without retries), and a call holds it for a few
// hundred nanoseconds, so with hundreds of shards two cores rarely meet
// (0.2-1.2 % of calls in BenchmarkCheckAndIncrementParallel): Stats.Contended
// counts the acquisitions that had to wait. No lock is global; the clock is
// read once per call, before locking (the default clock and NewCoarseClock
// make that read an atomic load: clock_gettime is slow on virtual machines).
//
// # The hot path
//
// A call's cost is one trip to memory for the application's record plus
// what it computes. Do keeps that computation small: the Decision a caller
// reuses holds the last plan it was used with, compiled (each limit's
// counter identity, whether it is the first limit on its counter, its
// sliding sub-bucket width, the plan's distinct metrics), and beside it
// what changes only with the clock: each calendar limit's window for the
// current second and each sliding limit's current sub-bucket, so that a
// call in the same second divides nothing; and where the counters sat in
// the last record it read, so that a call on a record arranged alike (apps
// on one plan usually are) checks one word per counter instead of
// searching. The compiled plan is checked against the request's limits on
// every call (a compare per limit, which also tells whether the reports
// already carry them), so a caller needs no plan handle and a changed plan
// is never served stale. The usage is credited to the plan's metrics in one
// pass over its entries, each walking up its metric's ancestors; then one
// pass over the limits reads every counter and decides, and one applies the
// increments when admitted, fills the reports and picks the most
// constrained limit. Plans of more than 8 limits, and requests with a set
// entry or refused for a negative value, take a general path that works
// everything out per call. With a million apps the trip to memory (about
// 200-300ns on a virtual machine, a page walk included) dominates: the CPU
// overlaps it with the next call's only when a call is short enough for
// both to fit in its window of in-flight instructions and stores.
//
// Record works each limit out once as well: its window, its sliding
// sub-buckets (one division) and where its counter is, which the second
// pass uses until a counter is created.
//
// # Restore
//
// After a restart, counters are rebuilt from the event log: Seed sets a
// calendar counter to a sum taken from the analytics store for the window
// open now (ignoring closed windows) and Record replays events at their own
// times into the windows still open, including sliding sub-buckets. Both
// keep the invariant above: a negative sum, or usage that would pass
// MaxInt64, is refused with an error and counts nowhere. Seeding
// the sums up to a point and recording the events after it gives the same
// counters as a limiter that saw every call (TestRestore).
package limiter

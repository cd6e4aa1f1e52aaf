// Package load is Sluice's load generator: it drives an HTTP target with
// the requests of a scenario file over many keep-alive connections
// (fasthttp's client), records latencies in HDR histograms and writes JSON
// and Markdown reports and a PNG chart of latency against offered load.
// `sluice bench` and `make bench-load` (bench/loadrun) run it.
//
// # Open and closed loop
//
// Closed loop (Options.Rate 0): every connection sends its next request as
// soon as the previous one is answered; throughput is the target's
// saturation and latency counts from each send.
//
// Open loop (Options.Rate > 0): request k is due at start + k/Rate, whatever
// the answers; one pacer goroutine, sleeping on a timerfd on Linux (the
// runtime's timers wake up to a millisecond late), hands each due request
// to a free connection at its due time, and the latency counts from the due
// time, not from the send. A target (or generator) that falls behind therefore shows
// its queueing in the latency instead of hiding it by sending less
// (coordinated omission); the service time from the send is reported
// beside it, and requests due but never sent before the end are counted as
// missed.
//
// # Invariants
//
// The requests are rendered from the scenario before the clock starts (a
// pool of at most 32 MiB, cycled), so the generator does no templating
// while it measures; answers of the warm-up, and closed-loop answers after
// the end, are not counted. Scenario files are bounded (1 MiB, 64 request
// kinds, 10,000 repetitions) and checked before anything is sent.
package load

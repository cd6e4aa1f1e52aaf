// Package limiter owns usage counters: calendar and sliding windows per
// application and metric, sharded in memory, with atomic check-and-increment.
package limiter

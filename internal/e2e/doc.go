// Package e2e holds the end-to-end tests of the usage pipeline through the
// sluice binary: gateway calls over HTTP → `sluice serve --roles api` →
// Kafka (an in-process kfake broker on a real TCP port, with its log on disk)
// → `sluice serve --roles rollup` → ClickHouse (a local server from
// internal/chlocal), with processes killed and servers stopped on purpose
// (the crash, outage and restart tests), and of what those processes
// print: under hostile and malformed input on every listener, at debug
// level, no configured credential appears in their output
// (TestNoSecretInLogs).
//
// The non-test files are the harness the tests and bench/freshness share:
// Build compiles the binary, Broker is a stoppable kfake broker that comes
// back on the same port with the same log, Node is one `sluice serve` child
// process, and Scrape, WaitFlushed and WaitRolledUp observe the pipeline
// through /metrics, the broker's end offsets and the offset markers in
// ClickHouse. Nothing here is used by the product.
package e2e
